package adpctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/agentdataplatform/adp/internal/demosite"
	"github.com/agentdataplatform/adp/internal/dispatch"
	"github.com/agentdataplatform/adp/internal/localrun"
)

// errInterrupted makes Run exit 130, as a shell does after Ctrl-C.
var errInterrupted = errors.New("interrupted")

func cmdUp(ctx context.Context, e Env, args []string) error {
	fs := newFlags(e, "up", "[--tasks FILE] [--output DIR] [--timeout D] [--keep [--redis-addr HOST:PORT]]")
	tasks := fs.String("tasks", envOr("TASK_FILE", dispatch.DefaultEnvConfig().TaskFile), "task file")
	out := fs.String("output", e.OutputDir, "output directory (trajectories, logs, redis data)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: no limit)")
	demo := fs.String("demo-addr", e.demoAddr(), "address of the demo site the sample web tasks use (empty: none)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	keep := fs.Bool("keep", false, "keep the stack up after the file is done, until Ctrl-C: Redis on --redis-addr, both runtimes, the demo site, the task file followed")
	redisAddr := fs.String("redis-addr", "", "where Redis listens (default: a free port; with --keep "+localrun.KeepRedisAddr+", where adpctl and redis-cli look)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *keep && *redisAddr == "" {
		*redisAddr = localrun.KeepRedisAddr
	}
	terminal := false
	if f, ok := e.Stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			terminal = true
		}
	}
	var printErr error
	printSummary := func(sum *localrun.Summary) {
		if *asJSON {
			enc := json.NewEncoder(e.Stdout)
			enc.SetIndent("", "  ")
			printErr = enc.Encode(sum)
			return
		}
		localrun.WriteSummary(e.Stdout, sum)
	}
	_, err := localrun.Run(ctx, localrun.Config{
		TaskFile: *tasks, OutputDir: *out, DemoAddr: *demo, Timeout: *timeout,
		Progress: e.Stderr, Terminal: terminal,
		RedisAddr: *redisAddr, Keep: *keep, Done: printSummary,
	})
	if errors.Is(err, localrun.ErrInterrupted) {
		fmt.Fprintln(e.Stderr, "adp: interrupted; everything started was stopped")
		return errInterrupted
	}
	if err == nil && *keep {
		fmt.Fprintln(e.Stderr, "adp: stopped; everything started was stopped")
	}
	if err != nil {
		return err
	}
	return printErr
}

// demoAddr is ADP_DEMO_ADDR, or the demo site's default address.
func (e Env) demoAddr() string {
	if e.DemoAddr != "" {
		return e.DemoAddr
	}
	return demosite.DefaultAddr
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func cmdDemo(ctx context.Context, e Env, args []string) error {
	fs := newFlags(e, "demo", "[--addr HOST:PORT]")
	addr := fs.String("addr", e.demoAddr(), "listen address")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: demosite.Handler(), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(e.Stderr, "demo site on http://%s/ (a web runtime reaches it as %s with WEB_HOST_ALIASES=%s=%s)\n", ln.Addr(), demosite.TaskAddr, demosite.TaskAddr, ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
