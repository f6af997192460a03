package testsupport

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	stall string         // digest whose downloads stop halfway (StallBlob)
	gate  chan struct{}  // closed by StallBlob's release
}

// StallBlob makes downloads of the blob digest stop halfway (the first
// half sent and flushed) until the returned function is called: a client
// is then certainly in the middle of one.
func (r *Registry) StallBlob(digest string) (release func()) {
	gate := make(chan struct{})
	r.mu.Lock()
	r.stall, r.gate = digest, gate
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.stall, r.gate = "", nil
			r.mu.Unlock()
			close(gate)
		})
	}
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
			gate := r.gate
			stall := r.stall == digest
			r.mu.Unlock()
			if stall {
				w = &stallingWriter{ResponseWriter: w, gate: gate}
			}
		}
		inner.ServeHTTP(w, req)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// stallingWriter sends the first half of a response (by its
// Content-Length), flushes it, and waits for gate before the rest.
type stallingWriter struct {
	http.ResponseWriter
	gate    chan struct{}
	written int64
	stalled bool
}

func (s *stallingWriter) Write(p []byte) (int, error) {
	if !s.stalled {
		half, _ := strconv.ParseInt(s.Header().Get("Content-Length"), 10, 64)
		half /= 2
		if s.written+int64(len(p)) > half {
			n, err := s.ResponseWriter.Write(p[:max(half-s.written, 0)])
			s.written += int64(n)
			if err != nil {
				return n, err
			}
			if f, ok := s.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
			s.stalled = true
			<-s.gate
			m, err := s.ResponseWriter.Write(p[n:])
			s.written += int64(m)
			return n + m, err
		}
	}
	n, err := s.ResponseWriter.Write(p)
	s.written += int64(n)
	return n, err
}
