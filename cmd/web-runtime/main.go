// Command web-runtime serves web tasks from tasks:web: a bounded pool of
// isolated Chromium contexts driven through Playwright, each task's actions
// recorded with the page observation that followed.
package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/envconfig"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/service"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/webagent"
)

// name and metricsAddr are the service's name in logs and its METRICS_ADDR default.
const name, metricsAddr = "web-runtime", ":8002"

type config struct {
	service.RuntimeConfig
	MaxConcurrent     int           `env:"MAX_CONCURRENT" envDefault:"4" valid:">=1"`
	ChromiumPath      string        `env:"CHROMIUM_PATH"` // default: see browser.Config.ExecutablePath
	DriverPath        string        `env:"PLAYWRIGHT_DRIVER_PATH"`
	NodePath          string        `env:"PLAYWRIGHT_NODEJS_PATH"`
	AllowPrivate      bool          `env:"WEB_ALLOW_PRIVATE" envDefault:"false"`
	AllowHosts        []string      `env:"WEB_ALLOW_HOSTS" envSeparator:","`
	BlockImages       bool          `env:"WEB_BLOCK_IMAGES" envDefault:"true"`
	RecycleAfter      int           `env:"BROWSER_RECYCLE_AFTER" envDefault:"1000"` // -1: never (Check)
	NavigationTimeout time.Duration `env:"WEB_NAVIGATION_TIMEOUT" envDefault:"30s" valid:">0"`
	ActionTimeout     time.Duration `env:"WEB_ACTION_TIMEOUT" envDefault:"10s" valid:">0"`
	SettleTimeout     time.Duration `env:"WEB_SETTLE_TIMEOUT" envDefault:"5s" valid:">0"`
	QuietWindow       time.Duration `env:"WEB_QUIET_WINDOW" envDefault:"100ms" valid:">0"`       // at most WEB_SETTLE_TIMEOUT (Check)
	MaxTextChars      int           `env:"WEB_MAX_TEXT_CHARS" envDefault:"4000" valid:">=1"`     // at most browser.MaxObservationChars (Check)
	MaxSnapshotChars  int           `env:"WEB_MAX_SNAPSHOT_CHARS" envDefault:"4000" valid:">=1"` // likewise
	// Vision sends the model a screenshot of the viewport with every
	// observation (webagent.Agent.Vision); chat API only (Check).
	Vision        bool     `env:"WEB_VISION" envDefault:"false"`
	MaxDownloadMB int      `env:"WEB_MAX_DOWNLOAD_MB" envDefault:"10" valid:">=0"` // 0: downloads refused; at most 1024 (Check)
	ChromiumArgs  []string `env:"WEB_CHROMIUM_ARGS" envSeparator:" "`
	// name=address pairs the URL policy and the egress proxy resolve without
	// DNS, like /etc/hosts lines; name:port=address:port pairs forward that
	// host and port to exactly that destination (and allow it): `make run`
	// forwards demo-site:8765 (the compose service the shipped tasks name)
	// to wherever it serves the demo site.
	HostAliases map[string]string `env:"WEB_HOST_ALIASES" envSeparator:"," envKeyValSeparator:"="`
}

// Check accepts -1 (never) or a positive BROWSER_RECYCLE_AFTER, observation
// caps up to browser.MaxObservationChars, a quiet window within the settle
// timeout, and only the pairs hostAliases reads in WEB_HOST_ALIASES
// (envconfig.Checker).
func (c *config) Check() error {
	if c.RecycleAfter != -1 && c.RecycleAfter < 1 {
		return &envconfig.Error{Var: "BROWSER_RECYCLE_AFTER", Value: strconv.Itoa(c.RecycleAfter), Want: "a whole number of at least 1, or -1 for never"}
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"WEB_MAX_TEXT_CHARS", c.MaxTextChars}, {"WEB_MAX_SNAPSHOT_CHARS", c.MaxSnapshotChars}} {
		if v.n > browser.MaxObservationChars {
			return &envconfig.Error{Var: v.name, Value: strconv.Itoa(v.n), Want: fmt.Sprintf("a whole number from 1 to %d", browser.MaxObservationChars)}
		}
	}
	if c.Vision && c.LLM.API == llm.APICompletions {
		return &envconfig.Error{Var: "WEB_VISION", Value: "true", Want: "false with LLM_API=completions (a completions prompt is text: the screenshot could not be sent)"}
	}
	if c.MaxDownloadMB > browser.MaxDownloadBytesLimit>>20 {
		return &envconfig.Error{Var: "WEB_MAX_DOWNLOAD_MB", Value: strconv.Itoa(c.MaxDownloadMB), Want: fmt.Sprintf("a whole number from 0 (downloads refused) to %d", browser.MaxDownloadBytesLimit>>20)}
	}
	if c.QuietWindow > c.SettleTimeout {
		return &envconfig.Error{Var: "WEB_QUIET_WINDOW", Value: c.QuietWindow.String(), Want: "a duration no longer than WEB_SETTLE_TIMEOUT (" + c.SettleTimeout.String() + ")"}
	}
	for name, addr := range c.HostAliases {
		if _, _, err := hostAliases(map[string]string{name: addr}); err != nil {
			return &envconfig.Error{Var: "WEB_HOST_ALIASES", Value: name + "=" + addr,
				Want: "comma-separated name=IP-address or name:port=IP-address:port pairs, such as demo-site=127.0.0.1 or demo-site:8765=127.0.0.1:9000"}
		}
	}
	return nil
}

// downloadBytes is WEB_MAX_DOWNLOAD_MB as browser.Config.MaxDownloadBytes:
// 0 refuses every download.
func downloadBytes(mb int) int64 {
	if mb == 0 {
		return -1
	}
	return int64(mb) << 20
}

func main() { service.Main(name, metricsAddr, &config{}, run) }

func run(ctx context.Context, p *service.Process, cfg *config) error {
	log := p.Log
	lookup, forward, err := hostAliases(cfg.HostAliases)
	if err != nil {
		return err
	}
	bcfg := browser.Config{
		ExecutablePath: cfg.ChromiumPath, DriverDir: cfg.DriverPath, NodePath: cfg.NodePath,
		MaxConcurrent: cfg.MaxConcurrent, RecycleAfter: cfg.RecycleAfter,
		NavigationTimeout: cfg.NavigationTimeout, ActionTimeout: cfg.ActionTimeout,
		SettleTimeout: cfg.SettleTimeout, QuietWindow: cfg.QuietWindow,
		MaxTextChars: cfg.MaxTextChars, MaxSnapshotChars: cfg.MaxSnapshotChars,
		MaxDownloadBytes: downloadBytes(cfg.MaxDownloadMB),
		Policy:           browser.URLPolicy{AllowPrivate: cfg.AllowPrivate, AllowHosts: cfg.AllowHosts, Forward: forward, LookupNetIP: lookup},
		LoadImages:       !cfg.BlockImages, ExtraArgs: cfg.ChromiumArgs, Logger: log,
	}
	// Refuse to start, saying what to install, when Chromium or the driver
	// is missing; nothing is ever downloaded at run time.
	if err := browser.CheckDependencies(bcfg); err != nil {
		return err
	}
	rdb, m := p.RDB, p.Metrics
	client, err := cfg.LLM.NewLLM(core.RuntimeWeb, m)
	if err != nil {
		return err
	}
	pool, err := browser.NewPool(ctx, bcfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	log.Info("browser ready", "max_concurrent", cfg.MaxConcurrent, "allow_private", cfg.AllowPrivate, "allow_hosts", cfg.AllowHosts, "llm", client != nil)
	return p.ServeRuntime(ctx, service.Runtime{
		Name: core.RuntimeWeb, Stream: core.StreamWeb, Concurrency: cfg.MaxConcurrent,
		Config: cfg.RuntimeConfig, HasModel: client != nil,
		CacheTypes: []string{string(core.TaskWeb)},
		Exec: &webagent.Agent{
			Pages: webagent.PoolPages(pool), LLM: client,
			Cache:   templatecache.New(rdb, templatecache.Options{TTL: cfg.CacheTTL}),
			Metrics: m, Log: log,
			ScreenshotDir: core.TrajectoriesPath(cfg.OutputDir),
			Vision:        cfg.Vision,
		},
		Checks: []func(context.Context) error{func(context.Context) error { return pool.Healthy() }},
		Loops:  []func(context.Context) error{browserStats(pool, m)},
	})
}

// hostAliases reads WEB_HOST_ALIASES. A name=address entry makes the lookup
// resolve the name to the address, every other name with DNS (the lookup is
// nil, the policy's default resolver, without such entries); an alias is not
// an exemption: the address is checked like any other unless the name is in
// WEB_ALLOW_HOSTS. A name:port=address:port entry forwards that host and
// port to exactly that destination, allowed (browser.URLPolicy.Forward).
func hostAliases(aliases map[string]string) (lookup func(ctx context.Context, network, host string) ([]netip.Addr, error), forward map[string]netip.AddrPort, err error) {
	names := map[string]netip.Addr{}
	for k, v := range aliases {
		key, val := strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if host, port, err := net.SplitHostPort(key); err == nil {
			ap, err := netip.ParseAddrPort(val)
			if err != nil {
				return nil, nil, fmt.Errorf("WEB_HOST_ALIASES %s=%s: a host:port is forwarded to an address:port (%w)", k, v, err)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, nil, fmt.Errorf("WEB_HOST_ALIASES %s=%s: invalid port %q", k, v, port)
			}
			if forward == nil {
				forward = map[string]netip.AddrPort{}
			}
			forward[net.JoinHostPort(strings.Trim(host, "[]"), port)] = ap
			continue
		}
		addr, err := netip.ParseAddr(val)
		if err != nil {
			return nil, nil, fmt.Errorf("WEB_HOST_ALIASES %s=%s: %w", k, v, err)
		}
		names[key] = addr
	}
	if len(names) == 0 {
		return nil, forward, nil
	}
	return func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		if a, ok := names[strings.ToLower(host)]; ok {
			return []netip.Addr{a}, nil
		}
		return net.DefaultResolver.LookupNetIP(ctx, network, host)
	}, forward, nil
}

// browserStats copies the pool's counters into the metrics every second.
func browserStats(pool *browser.Pool, m *metrics.Set) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var restarts int64
		for {
			st := pool.Stats()
			m.BrowserPagesInUse.Set(float64(st.PagesInUse))
			if d := st.BrowserRestarts + st.BrowserRecycles - restarts; d > 0 {
				m.BrowserRestarts.Add(float64(d))
				restarts += d
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}
