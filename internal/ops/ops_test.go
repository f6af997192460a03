package ops

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	var healthErr error
	ready := false
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_total", Help: "h"})
	reg.MustRegister(c)
	c.Inc()
	s := &Server{Gatherer: reg, Health: func(context.Context) error { return healthErr }, Ready: func() bool { return ready }}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		setup    func()
		path     string
		status   int
		contains string
	}{
		{func() {}, "/healthz", 200, "ok"},
		{func() { healthErr = errors.New("redis: connection refused") }, "/healthz", 503, "redis: connection refused"},
		{func() {}, "/readyz", 503, "not ready"},
		{func() { ready = true }, "/readyz", 200, "ready"},
		{func() {}, "/metrics", 200, "probe_total 1"},
	}
	for _, tc := range tests {
		tc.setup()
		code, body := get(tc.path)
		if code != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.status, tc.contains)
		}
	}
}

func TestHealthcheckExitCode(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy {
			http.Error(w, "unhealthy", 503)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if code := Healthcheck(":" + port); code != 0 {
		t.Errorf("healthy: exit %d", code)
	}
	healthy = false
	if code := Healthcheck("0.0.0.0:" + port); code != 1 {
		t.Errorf("unhealthy: exit %d", code)
	}
	if code := Healthcheck("nonsense"); code != 1 {
		t.Errorf("bad address: exit %d", code)
	}
}

func TestHealthReporterNeedsAnInterval(t *testing.T) {
	// HEALTH_INTERVAL's default is the environment's; none is made up here.
	if err := (&HealthReporter{}).Run(context.Background()); err == nil {
		t.Error("Run without an interval returned nil")
	}
}
