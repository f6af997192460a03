package report

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/playwright-community/playwright-go"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// screenshotEnv names a file to save the rendered report to, for a human
// look (the test always writes to a temporary file otherwise).
const screenshotEnv = "REPORT_SCREENSHOT"

// TestReportRendersInChromium opens the report from a file in headless
// Chromium and checks that the four charts are drawn, that nothing was
// fetched from the network and that the console stayed clean.
func TestReportRendersInChromium(t *testing.T) {
	deps := testsupport.FindBrowser(t)
	t.Setenv("PLAYWRIGHT_NODEJS_PATH", deps.Node) // playwright-go reads it only from the environment

	page := renderSample(t, sampleSet(150))
	file := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}

	pw, err := playwright.Run(&playwright.RunOptions{
		DriverDirectory:     deps.DriverDir,
		SkipInstallBrowsers: true,
		Verbose:             false,
		Stdout:              io.Discard,
		Stderr:              io.Discard,
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("start the Playwright driver: %v", err)
	}
	t.Cleanup(func() { _ = pw.Stop() })
	browser, err := pw.Chromium.Launch(playwright.BrowserTypeLaunchOptions{
		ExecutablePath: playwright.String(deps.Chromium),
		Headless:       playwright.Bool(true),
		Args: []string{"--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"},
	})
	if err != nil {
		t.Fatalf("launch %s: %v", deps.Chromium, err)
	}
	t.Cleanup(func() { _ = browser.Close() })
	pg, err := browser.NewPage(playwright.BrowserNewPageOptions{Viewport: &playwright.Size{Width: 1280, Height: 900}})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var problems, fetched []string
	pg.OnConsole(func(m playwright.ConsoleMessage) {
		if m.Type() == "error" || m.Type() == "warning" {
			mu.Lock()
			problems = append(problems, m.Type()+": "+m.Text())
			mu.Unlock()
		}
	})
	pg.OnPageError(func(err error) {
		mu.Lock()
		problems = append(problems, "page error: "+err.Error())
		mu.Unlock()
	})
	pg.OnRequest(func(r playwright.Request) {
		if u := r.URL(); !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") {
			mu.Lock()
			fetched = append(fetched, u)
			mu.Unlock()
		}
	})

	if _, err := pg.Goto("file://"+file, playwright.PageGotoOptions{WaitUntil: playwright.WaitUntilStateLoad}); err != nil {
		t.Fatalf("open the report: %v", err)
	}

	if n, err := pg.Locator("svg").Count(); err != nil || n < 4 {
		t.Errorf("svg count = %d (%v), want >= 4", n, err)
	}
	for _, c := range []struct{ chart, marks string }{
		{"outcomes", "rect.bar"},
		{"errors", "rect.bar"},
		{"durations", "rect.bar"},
		{"throughput", "path.line"},
	} {
		sel := "#chart-" + c.chart + " svg " + c.marks
		n, err := pg.Locator(sel).Count()
		if err != nil || n == 0 {
			t.Errorf("%s: %d drawn marks (%v)", sel, n, err)
			continue
		}
		// Drawn means a visible size on the page, not only present.
		box, err := pg.Locator(sel).First().BoundingBox()
		if err != nil || box == nil || box.Width <= 0 || box.Height <= 0 && c.marks != "path.line" {
			t.Errorf("%s: first mark has no size: %+v (%v)", sel, box, err)
		}
		if c.marks == "path.line" {
			length, err := pg.Locator(sel).First().Evaluate("p => p.getTotalLength()", nil)
			var l float64
			switch v := length.(type) { // playwright-go decodes whole numbers as int
			case int:
				l = float64(v)
			case float64:
				l = v
			}
			if err != nil || l <= 0 {
				t.Errorf("%s: path length %v (%v)", sel, length, err)
			}
		}
	}
	if n, _ := pg.Locator("#by-type tbody tr").Count(); n < 3 {
		t.Errorf("summary table has %d rows, want a row per type and a total", n)
	}

	shot := filepath.Join(t.TempDir(), "report.png")
	if p := os.Getenv(screenshotEnv); p != "" {
		shot = p
	}
	if _, err := pg.Screenshot(playwright.PageScreenshotOptions{Path: playwright.String(shot), FullPage: playwright.Bool(true)}); err != nil {
		t.Errorf("screenshot: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console errors: %q", problems)
	}
	if len(fetched) > 0 {
		t.Errorf("the report fetched %q; it must be self-contained", fetched)
	}
}
