package testsupport

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is an OCI distribution registry in this process
// (go-containerregistry's, in memory) on a loopback port.
type Registry struct {
	// Host is host:port, the registry part of image references.
	Host string
	// BlobGets counts the blob downloads it served (GET .../blobs/...).
	BlobGets atomic.Int64
}

// StartRegistry starts a registry, stopped by t.Cleanup. With a user and
// password, every request must carry them (HTTP basic auth), as a private
// registry asks.
func StartRegistry(t testing.TB, userPassword ...string) *Registry {
	t.Helper()
	r := &Registry{}
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
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			r.BlobGets.Add(1)
		}
		inner.ServeHTTP(w, req)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}
