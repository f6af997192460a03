package browser

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/playwright-community/playwright-go"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The benchmarks run the blueprint's web task on a local page: go to a form,
// fill and submit it, and check that the result page has the expected text.
//
//	go test -run '^$' -bench . -benchtime 50x ./internal/browser/
//
// BenchmarkPoolTask and BenchmarkPoolTaskParallel go through a warm pool
// (one Chromium, a fresh context per task); BenchmarkLaunchPerTask starts a
// pool (driver and Chromium) for every task, the naive alternative, and
// BenchmarkLaunchPerTaskParallel does so with 4 workers;
// BenchmarkPoolVsLaunch alternates the first and the third in rounds, for
// their ratio;
// BenchmarkLaunchBrowserPerTask keeps one driver and launches only Chromium
// per task, with plain Playwright calls (no URL policy or proxy).

func runFormTask(pool *Pool, siteURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTaskTimeout)
	defer cancel()
	s, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Goto(ctx, siteURL+"/form"); err != nil {
		return err
	}
	if err := s.FillAndSubmit(ctx, "#q", "benchmark"); err != nil {
		return err
	}
	o, err := s.Observe(ctx)
	if err != nil {
		return err
	}
	if !strings.Contains(o.Text, "Results for benchmark") {
		return fmt.Errorf("expected text missing: %q", o.Text)
	}
	return nil
}

// benchPool uses the production timeouts: the benchmarks measure, they do
// not test timeouts.
func benchPool(b *testing.B) *Pool {
	return newTestPool(b, productionTimeouts)
}

func productionTimeouts(c *Config) {
	c.ActionTimeout = DefaultActionTimeout
	c.SettleTimeout = DefaultSettleTimeout
	c.NavigationTimeout = DefaultNavigationTimeout
}

func reportTasksPerSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkPoolTask(b *testing.B) {
	pool := benchPool(b)
	web := newSite(b)
	if err := runFormTask(pool, web.URL); err != nil { // warm up
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := runFormTask(pool, web.URL); err != nil {
			b.Fatal(err)
		}
	}
	reportTasksPerSecond(b)
}

// BenchmarkPoolTaskParallel runs about 4 workers on a MaxConcurrent=4 pool,
// as the web runtime does.
func BenchmarkPoolTaskParallel(b *testing.B) {
	pool := benchPool(b)
	web := newSite(b)
	if err := runFormTask(pool, web.URL); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := runFormTask(pool, web.URL); err != nil {
				b.Error(err) // Fatal is not allowed off the benchmark's goroutine
				return
			}
		}
	})
	reportTasksPerSecond(b)
}

// runTasksParallel runs n form tasks on pool with workers goroutines.
func runTasksParallel(pool *Pool, siteURL string, n, workers int) error {
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if err := runFormTask(pool, siteURL); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkPoolVsLaunch is the pool against a browser launched per task in
// one run: b.N tasks on each side, in rounds (ADP_BENCH_ROUNDS, default 5)
// that alternate 4 workers on the warm pool with launches one at a time, so
// that a change of the machine's speed during the run (this VM's varies by
// 10-15 % over minutes) affects both sides alike. It reports each side's
// rate over all its rounds, their ratio, and the lowest and highest ratio of
// a single round.
func BenchmarkPoolVsLaunch(b *testing.B) {
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("ADP_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	rounds = min(rounds, b.N)
	cfg := testPoolConfig(b, productionTimeouts)
	pool := benchPool(b)
	web := newSite(b)
	if err := runFormTask(pool, web.URL); err != nil { // warm up
		b.Fatal(err)
	}
	var poolTime, launchTime time.Duration
	var ratios []float64
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r < b.N%rounds {
			n++
		}
		start := time.Now()
		if err := runTasksParallel(pool, web.URL, n, 4); err != nil {
			b.Fatal(err)
		}
		pt := time.Since(start)
		start = time.Now()
		for range n {
			if err := runLaunchedTask(cfg, web.URL); err != nil {
				b.Fatal(err)
			}
		}
		lt := time.Since(start)
		poolTime += pt
		launchTime += lt
		ratios = append(ratios, lt.Seconds()/pt.Seconds())
		b.Logf("round %d, %d tasks each: pool %.2f tasks/s, launched per task %.3f tasks/s, ratio %.2f",
			r+1, n, float64(n)/pt.Seconds(), float64(n)/lt.Seconds(), ratios[r])
	}
	b.ReportMetric(float64(b.N)/poolTime.Seconds(), "pool-tasks/s")
	b.ReportMetric(float64(b.N)/launchTime.Seconds(), "launch-tasks/s")
	b.ReportMetric(launchTime.Seconds()/poolTime.Seconds(), "ratio")
	b.ReportMetric(slices.Min(ratios), "ratio-min")
	b.ReportMetric(slices.Max(ratios), "ratio-max")
}

// runLaunchedTask is the naive alternative to the pool: a pool (driver and
// Chromium) started for one form task and closed after it.
func runLaunchedTask(cfg Config, siteURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTaskTimeout)
	defer cancel()
	pool, err := NewPool(ctx, cfg)
	if err != nil {
		return err
	}
	err = runFormTask(pool, siteURL)
	if cerr := pool.Close(); err == nil {
		err = cerr
	}
	return err
}

func BenchmarkLaunchPerTask(b *testing.B) {
	web := newSite(b)
	cfg := testPoolConfig(b, productionTimeouts)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := runLaunchedTask(cfg, web.URL); err != nil {
			b.Fatal(err)
		}
	}
	reportTasksPerSecond(b)
}

// BenchmarkLaunchPerTaskParallel is BenchmarkLaunchPerTask with about 4
// workers, as BenchmarkPoolTaskParallel: the same concurrency on both sides.
func BenchmarkLaunchPerTaskParallel(b *testing.B) {
	web := newSite(b)
	cfg := testPoolConfig(b, productionTimeouts)
	b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := runLaunchedTask(cfg, web.URL); err != nil {
				b.Error(err) // Fatal is not allowed off the benchmark's goroutine
				return
			}
		}
	})
	reportTasksPerSecond(b)
}

func BenchmarkLaunchBrowserPerTask(b *testing.B) {
	deps := testsupport.FindBrowser(b)
	web := newSite(b)
	b.Setenv("PLAYWRIGHT_NODEJS_PATH", deps.Node)
	pw, err := playwright.Run(&playwright.RunOptions{DriverDirectory: deps.DriverDir, SkipInstallBrowsers: true, Verbose: false})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = pw.Stop() }()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		br, err := pw.Chromium.Launch(playwright.BrowserTypeLaunchOptions{
			ExecutablePath: playwright.String(deps.Chromium), Headless: playwright.Bool(true), Args: chromiumArgs,
		})
		if err != nil {
			b.Fatal(err)
		}
		page, err := br.NewPage()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := page.Goto(web.URL + "/form"); err != nil {
			b.Fatal(err)
		}
		if err := page.Locator("#q").Fill("benchmark"); err != nil {
			b.Fatal(err)
		}
		if err := page.Locator("#q").Press("Enter"); err != nil {
			b.Fatal(err)
		}
		text, err := page.Locator("body").InnerText()
		if err != nil || !strings.Contains(text, "Results for benchmark") {
			b.Fatalf("expected text missing: %q %v", text, err)
		}
		if err := br.Close(); err != nil {
			b.Fatal(err)
		}
	}
	reportTasksPerSecond(b)
}
