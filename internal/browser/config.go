package browser

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// PlaywrightCoreVersion is the npm playwright-core version the driver
// directory must hold: the one playwright-go v0.6000.0 speaks to.
const PlaywrightCoreVersion = "1.60.0"

// Defaults of Config. A zero field takes its default.
const (
	// DefaultExecutablePath is Debian's chromium-headless-shell: the
	// headless-only build Playwright itself runs for headless Chromium. A
	// browser context costs a fraction of what it costs in the full browser
	// (measured over 21 form tasks, launch included: 0.37 vs 1.05
	// CPU-seconds per task), since the full browser builds a whole profile
	// for every incognito context.
	DefaultExecutablePath = "/usr/bin/chromium-headless-shell"
	// FallbackExecutablePath (Debian's full chromium) is used when the
	// headless shell is not installed.
	FallbackExecutablePath     = "/usr/bin/chromium"
	DefaultMaxConcurrent       = 4
	DefaultRecycleAfter        = 1000
	DefaultNavigationTimeout   = 30 * time.Second
	DefaultActionTimeout       = 10 * time.Second
	DefaultSettleTimeout       = 5 * time.Second
	DefaultQuietWindow         = 100 * time.Millisecond
	DefaultLaunchTimeout       = 60 * time.Second
	DefaultCloseTimeout        = 10 * time.Second
	DefaultMaxTextChars        = 4000
	DefaultMaxSnapshotChars    = 4000
	DefaultMaxSnapshotElements = 20000
	// DefaultMaxDownloadBytes bounds a kept download (WEB_MAX_DOWNLOAD_MB).
	DefaultMaxDownloadBytes = 10 << 20
	// MaxDownloadBytesLimit bounds MaxDownloadBytes.
	MaxDownloadBytesLimit = 1 << 30
	// MaxObservationChars bounds MaxTextChars and MaxSnapshotChars: an
	// observation goes into every later model request of the attempt.
	MaxObservationChars = 200000
	// DefaultDriverDir is where scripts/bootstrap.sh puts the driver, relative
	// to the repository root (the working directory of `make` targets).
	DefaultDriverDir = ".tools/playwright-driver"
)

const (
	viewportWidth  = 1280
	viewportHeight = 720
	maxTitleChars  = 300
)

// Config configures a Pool. The zero value is usable: every zero field takes
// the default named in its comment, and every boolean defaults to the safe
// side (private addresses denied, images not loaded).
type Config struct {
	// ExecutablePath is the Chromium binary (CHROMIUM_PATH). Default
	// /usr/bin/chromium-headless-shell (Debian package
	// chromium-headless-shell), else /usr/bin/chromium (package chromium)
	// when only that is installed. Playwright's own browser downloads are
	// never used.
	ExecutablePath string
	// DriverDir is the Playwright driver directory: it holds package/, which
	// is node_modules/playwright-core 1.60.0 (PLAYWRIGHT_DRIVER_PATH). Default:
	// $PLAYWRIGHT_DRIVER_PATH, else .tools/playwright-driver (what
	// scripts/bootstrap.sh installs), else playwright-go's cache directory.
	DriverDir string
	// NodePath is the Node.js binary that runs the driver
	// (PLAYWRIGHT_NODEJS_PATH). Default: $PLAYWRIGHT_NODEJS_PATH, else
	// DriverDir/node, else `node` on PATH. playwright-go reads it only from the
	// environment, so NewPool sets PLAYWRIGHT_NODEJS_PATH for the process.
	NodePath string

	// MaxConcurrent is the number of sessions (browser contexts, one page
	// each) open at once; Acquire blocks while all are taken (MAX_CONCURRENT).
	// Default 4. Each context costs a renderer process, typically 50-200 MB.
	MaxConcurrent int
	// RecycleAfter is the number of contexts after which the browser is
	// replaced by a fresh one, to bound the memory a long-lived Chromium and
	// Playwright driver accumulate. Default 1000 (a headless shell's memory
	// stayed flat over 3,000 contexts; a relaunch costs about a CPU-second);
	// negative disables recycling.
	// The old browser finishes the sessions it has (drain) and is closed when
	// the last one ends; new sessions go to the new browser meanwhile, so
	// for a while two browsers run.
	RecycleAfter int

	// NavigationTimeout bounds one navigation (Goto, and the navigation an
	// action starts) until DOMContentLoaded. Default 30s.
	NavigationTimeout time.Duration
	// ActionTimeout bounds one action (click, fill, ...) including the wait
	// for its element to appear and be actionable. Default 10s.
	ActionTimeout time.Duration
	// SettleTimeout is how long a step waits, after the DOM is ready, for the
	// page to settle before observing: its load event (images, scripts),
	// then no request in flight and no change of its content for
	// QuietWindow (results a script renders after load). Not an error when
	// exceeded; requests open longer than SettleTimeout (a long poll) do
	// not count. Default 5s (WEB_SETTLE_TIMEOUT).
	SettleTimeout time.Duration
	// QuietWindow is how long a settled page has gone without a change of
	// its content (nodes added or removed, text changed) and with no request
	// in flight. Default 100ms (WEB_QUIET_WINDOW). Longer catches slower
	// scripts and costs every step that much.
	QuietWindow time.Duration
	// LaunchTimeout bounds starting the driver and Chromium. Default 60s.
	LaunchTimeout time.Duration
	// CloseTimeout bounds closing a context or a browser; past it the
	// processes are killed. Default 10s.
	CloseTimeout time.Duration

	// Policy is the URL policy (WEB_ALLOW_PRIVATE sets Policy.AllowPrivate).
	// The zero value denies private addresses.
	Policy URLPolicy
	// LoadImages lets pages load images. Default false: Blink does not
	// fetch them (--blink-settings=imagesEnabled=false; WEB_BLOCK_IMAGES=true,
	// the blueprint's "images disabled"), which saves bandwidth and renderer
	// memory.
	LoadImages bool

	// MaxTextChars caps Observation.Text, the viewport's visible text.
	// Default 4000 (WEB_MAX_TEXT_CHARS), at most MaxObservationChars.
	MaxTextChars int
	// MaxSnapshotChars caps Observation.AriaSnapshot, the viewport's
	// snapshot. Default 4000 (WEB_MAX_SNAPSHOT_CHARS), at most
	// MaxObservationChars.
	MaxSnapshotChars int
	// MaxSnapshotElements skips the accessibility snapshot of pages with
	// more elements (Observation.SnapshotError says so; the text is still
	// there). Playwright builds the whole snapshot before it can be capped,
	// which takes seconds on a page of tens of thousands of elements. Default
	// 20000 (a long Wikipedia article has about that many).
	MaxSnapshotElements int

	// MaxDownloadBytes bounds each download a session keeps
	// (Session.KeepDownloads): a larger one is refused and nothing of it
	// is kept. Default 10 MiB (WEB_MAX_DOWNLOAD_MB=10); negative: every
	// download is refused (WEB_MAX_DOWNLOAD_MB=0). At most
	// MaxDownloadBytesLimit.
	MaxDownloadBytes int64

	// ExtraArgs are appended to Chromium's command line.
	ExtraArgs []string
	// Logger receives pool events (launch, crash, recycle). Default
	// slog.Default().
	Logger *slog.Logger
	// DriverStderr receives the driver's and Chromium's stderr. Default
	// io.Discard: Chromium is noisy and its messages are not actionable.
	DriverStderr io.Writer
}

// chromiumArgs trim memory and background work; --disable-quic keeps all
// traffic on TCP through the egress proxy, and the WebRTC policy keeps UDP
// from bypassing it.
var chromiumArgs = []string{
	"--no-sandbox", // containers lack the user namespaces the sandbox needs
	"--disable-gpu",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--disable-dev-shm-usage",
	"--no-first-run",
	"--disable-quic",
	"--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
	// No --disable-features: Chromium keeps only the last one on its
	// command line, and Playwright passes its own list (MediaRouter,
	// OptimizationHints and Translate among them; RenderDocument and
	// PaintHolding too, which a second list would switch back on, costing
	// CPU on every navigation).
}

// launchArgs is Chromium's command line after Playwright's own flags.
func (c Config) launchArgs() []string {
	args := append([]string{}, chromiumArgs...)
	if !c.LoadImages {
		args = append(args, "--blink-settings=imagesEnabled=false")
	}
	return append(args, c.ExtraArgs...)
}

var discardLogger = log.New(io.Discard, "", 0)

func (c Config) withDefaults() Config {
	if c.ExecutablePath == "" {
		c.ExecutablePath = DefaultExecutablePath
		if !isExecutable(DefaultExecutablePath) && isExecutable(FallbackExecutablePath) {
			c.ExecutablePath = FallbackExecutablePath
		}
	}
	if c.DriverDir == "" {
		c.DriverDir = defaultDriverDir()
	}
	if c.NodePath == "" {
		c.NodePath = defaultNodePath(c.DriverDir)
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.RecycleAfter == 0 {
		c.RecycleAfter = DefaultRecycleAfter
	}
	if c.NavigationTimeout <= 0 {
		c.NavigationTimeout = DefaultNavigationTimeout
	}
	if c.ActionTimeout <= 0 {
		c.ActionTimeout = DefaultActionTimeout
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = DefaultSettleTimeout
	}
	if c.QuietWindow <= 0 {
		c.QuietWindow = DefaultQuietWindow
	}
	if c.LaunchTimeout <= 0 {
		c.LaunchTimeout = DefaultLaunchTimeout
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.MaxTextChars <= 0 {
		c.MaxTextChars = DefaultMaxTextChars
	}
	if c.MaxSnapshotChars <= 0 {
		c.MaxSnapshotChars = DefaultMaxSnapshotChars
	}
	if c.MaxSnapshotElements <= 0 {
		c.MaxSnapshotElements = DefaultMaxSnapshotElements
	}
	if c.MaxDownloadBytes == 0 {
		c.MaxDownloadBytes = DefaultMaxDownloadBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DriverStderr == nil {
		c.DriverStderr = io.Discard
	}
	return c
}

func defaultDriverDir() string {
	if d := os.Getenv("PLAYWRIGHT_DRIVER_PATH"); d != "" {
		return d
	}
	if fileExists(filepath.Join(DefaultDriverDir, "package", "cli.js")) {
		if abs, err := filepath.Abs(DefaultDriverDir); err == nil {
			return abs
		}
	}
	if cache, err := os.UserCacheDir(); err == nil {
		return filepath.Join(cache, "ms-playwright-go", PlaywrightCoreVersion)
	}
	return DefaultDriverDir
}

func defaultNodePath(driverDir string) string {
	if n := os.Getenv("PLAYWRIGHT_NODEJS_PATH"); n != "" {
		return n
	}
	if p := filepath.Join(driverDir, "node"); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("node"); err == nil {
		return p
	}
	return "node"
}

// Validate reports a setting out of its range (checked at start: a web
// runtime refuses to start with it).
func (c Config) Validate() error {
	for _, v := range []struct {
		name string
		n    int
	}{{"MaxTextChars (WEB_MAX_TEXT_CHARS)", c.MaxTextChars}, {"MaxSnapshotChars (WEB_MAX_SNAPSHOT_CHARS)", c.MaxSnapshotChars}} {
		if v.n < 0 || v.n > MaxObservationChars {
			return fmt.Errorf("browser config: %s is %d; it must be between 1 and %d (0 for the default)", v.name, v.n, MaxObservationChars)
		}
	}
	if c.MaxDownloadBytes > MaxDownloadBytesLimit {
		return fmt.Errorf("browser config: MaxDownloadBytes (WEB_MAX_DOWNLOAD_MB) is %d; it must be at most %d", c.MaxDownloadBytes, MaxDownloadBytesLimit)
	}
	if c.QuietWindow < 0 || (c.SettleTimeout > 0 && c.QuietWindow > c.SettleTimeout) {
		return fmt.Errorf("browser config: QuietWindow (WEB_QUIET_WINDOW) is %s; it must be between 0 and SettleTimeout", c.QuietWindow)
	}
	return nil
}

// CheckDependencies reports the first of Chromium, the Playwright driver and
// Node.js that cfg cannot find, as a *MissingDependencyError saying what to
// install. NewPool calls it before starting anything, so that nothing is ever
// downloaded or created at run time; the web runtime calls it at startup to
// refuse to start with a useful message.
func CheckDependencies(cfg Config) error {
	cfg = cfg.withDefaults()
	if !isExecutable(cfg.ExecutablePath) {
		return &MissingDependencyError{
			What: "chromium", Path: cfg.ExecutablePath,
			Fix: "install the Debian package chromium-headless-shell (apt-get install chromium-headless-shell, or run scripts/bootstrap.sh), or set CHROMIUM_PATH to a Chromium binary",
		}
	}
	pkg := filepath.Join(cfg.DriverDir, "package")
	driverFix := "run scripts/bootstrap.sh (it installs npm playwright-core@" + PlaywrightCoreVersion +
		" into .tools/playwright-driver), or set PLAYWRIGHT_DRIVER_PATH to a directory whose package/ is node_modules/playwright-core " +
		PlaywrightCoreVersion
	if !fileExists(filepath.Join(pkg, "cli.js")) {
		return &MissingDependencyError{What: "playwright driver", Path: pkg, Fix: driverFix}
	}
	if v, err := packageVersion(filepath.Join(pkg, "package.json")); err != nil || v != PlaywrightCoreVersion {
		got := v
		if err != nil {
			got = err.Error()
		}
		return &MissingDependencyError{
			What: "playwright driver " + PlaywrightCoreVersion, Path: pkg + " (found " + got + ")", Fix: driverFix,
		}
	}
	node := cfg.NodePath
	if p, err := exec.LookPath(node); err == nil {
		node = p
	}
	if !isExecutable(node) {
		return &MissingDependencyError{
			What: "node", Path: cfg.NodePath,
			Fix: "install Node.js 18 or later (apt-get install nodejs, or run scripts/bootstrap.sh), or set PLAYWRIGHT_NODEJS_PATH",
		}
	}
	return nil
}

func packageVersion(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return pkg.Version, nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
