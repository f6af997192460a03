// Command demo-site serves the offline demo website (internal/demosite) that
// the shipped tasks.jsonl's web tasks use, as the demo-site service of
// docker-compose.yml; `make run` serves the same site in-process.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/agentdataplatform/adp/internal/app"
	"github.com/agentdataplatform/adp/internal/demosite"
)

type config struct {
	app.Common
	// DEMO_ADDR is where the site listens; -healthcheck GETs /healthz there.
	Addr string `env:"DEMO_ADDR" envDefault:":8765"`
}

func main() {
	var cfg config
	app.Main("demo-site", &cfg,
		func(c *config) *app.Common { return &c.Common },
		func(c *config) string { return c.Addr },
		run)
}

func run(ctx context.Context, cfg *config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: demosite.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving the demo site", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
