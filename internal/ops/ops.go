// Package ops serves a binary's operational endpoints on METRICS_ADDR:
// /metrics (Prometheus), /healthz (200 when healthy) and /readyz (200 when
// ready for work). Responses never carry task content.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the operational HTTP server.
type Server struct {
	Addr     string
	Gatherer prometheus.Gatherer
	// Health returns nil when the process can do its work (Redis reachable,
	// jail or browser working). It is called per request with a short timeout.
	Health func(ctx context.Context) error
	// Ready reports whether the process is ready for work; nil means always.
	Ready func() bool
	Log   *slog.Logger
}

// healthTimeout bounds one health check.
const healthTimeout = 3 * time.Second

// Handler returns the HTTP handler of the endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.Health != nil {
			ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
			defer cancel()
			if err := s.Health(ctx); err != nil {
				http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.Ready != nil && !s.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listen on METRICS_ADDR %s: %w", s.Addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if s.Log != nil {
		s.Log.Info("serving /metrics /healthz /readyz", "addr", ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("ops server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("ops server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Healthcheck is the -healthcheck flag of every binary: GET /healthz on the
// local METRICS_ADDR and report it with the exit code (0 healthy), so
// container images need no curl.
func Healthcheck(metricsAddr string) int {
	host, port, err := net.SplitHostPort(metricsAddr)
	if err != nil {
		fmt.Printf("healthcheck: bad METRICS_ADDR %q: %v\n", metricsAddr, err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Printf("healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	fmt.Printf("healthcheck: %d %s\n", resp.StatusCode, strings.TrimSpace(string(buf[:n])))
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
