package testsupport

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is an OCI distribution registry in this process
// (go-containerregistry's, in memory) on a loopback port.
type Registry struct {
	// Host is host:port, the registry part of image references.
	Host  string
	mu    sync.Mutex
	blobs map[string]int // digest → downloads served
}

// Downloads is how many times the blob digest ("sha256:...") was served.
func (r *Registry) Downloads(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[digest]
}

// StartRegistry starts a registry, stopped by t.Cleanup. With a user and
// password, every request must carry them (HTTP basic auth), as a private
// registry asks.
func StartRegistry(t testing.TB, userPassword ...string) *Registry {
	t.Helper()
	r := &Registry{blobs: map[string]int{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if len(userPassword) == 2 {
			u, p, ok := req.BasicAuth()
			if !ok || u != userPassword[0] || p != userPassword[1] {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if _, digest, ok := strings.Cut(req.URL.Path, "/blobs/"); ok && req.Method == http.MethodGet {
			r.mu.Lock()
			r.blobs[digest]++
			r.mu.Unlock()
		}
		inner.ServeHTTP(w, req)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}
