// Command demo-site serves the offline demo website (internal/demosite) that
// the shipped tasks.jsonl's web tasks use, as the demo-site service of
// docker-compose.yml; `make run` serves the same site in-process. It needs
// no Redis: DEMO_ADDR (default :8765) is its only setting.
//
//	demo-site               serve
//	demo-site -healthcheck  GET /healthz on DEMO_ADDR, exit 0 if it answers 200
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentdataplatform/adp/internal/demosite"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/ops"
)

// config is the demo site's environment, checked like the services'
// (internal/envconfig).
type config struct {
	Addr string `env:"DEMO_ADDR" envDefault:":8765" valid:"hostport"`
}

func main() {
	healthcheck := flag.Bool("healthcheck", false, "GET /healthz on DEMO_ADDR and exit 0 if healthy (for container healthchecks)")
	flag.Parse()
	var cfg config
	if err := envconfig.Load(&cfg, nil); err != nil {
		fmt.Fprintf(os.Stderr, "demo-site: configuration: %v\n", err)
		os.Exit(2)
	}
	addr := cfg.Addr
	if *healthcheck {
		os.Exit(ops.Healthcheck(addr))
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("service", "demo-site")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, addr, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("DEMO_ADDR %s: %w", addr, err)
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
