package testsupport

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BrowserDeps are the paths browser tests launch Chromium with.
type BrowserDeps struct {
	Chromium  string // Chromium binary
	DriverDir string // Playwright driver directory (holds package/ = playwright-core)
	Node      string // Node.js binary
}

// playwrightCoreVersion is the driver version playwright-go v0.6000.0 needs.
const playwrightCoreVersion = "1.60.0"

// FindBrowser locates Chromium ($CHROMIUM_PATH, else
// /usr/bin/chromium-headless-shell, else /usr/bin/chromium), the
// Playwright driver ($PLAYWRIGHT_DRIVER_PATH, else .tools/playwright-driver
// at the repository root) and Node.js ($PLAYWRIGHT_NODEJS_PATH, else node on
// PATH). The test is skipped, saying what to install, only when one is
// absent.
func FindBrowser(t testing.TB) BrowserDeps {
	t.Helper()
	d := BrowserDeps{
		Chromium:  os.Getenv("CHROMIUM_PATH"),
		DriverDir: os.Getenv("PLAYWRIGHT_DRIVER_PATH"),
		Node:      os.Getenv("PLAYWRIGHT_NODEJS_PATH"),
	}
	if d.Chromium == "" {
		d.Chromium = "/usr/bin/chromium-headless-shell"
		if !isExecutable(d.Chromium) && isExecutable("/usr/bin/chromium") {
			d.Chromium = "/usr/bin/chromium"
		}
	}
	if !isExecutable(d.Chromium) {
		t.Skipf("chromium not found at %s: run scripts/bootstrap.sh (Debian package chromium-headless-shell) or set CHROMIUM_PATH", d.Chromium)
	}
	if d.DriverDir == "" {
		if root, ok := repoRoot(); ok {
			d.DriverDir = filepath.Join(root, ".tools", "playwright-driver")
		}
	}
	var pkg struct {
		Version string `json:"version"`
	}
	data, err := os.ReadFile(filepath.Join(d.DriverDir, "package", "package.json"))
	if err == nil {
		err = json.Unmarshal(data, &pkg)
	}
	if err != nil || pkg.Version != playwrightCoreVersion {
		t.Skipf("playwright driver %s not found in %q: run scripts/bootstrap.sh (npm playwright-core@%s) or set PLAYWRIGHT_DRIVER_PATH",
			playwrightCoreVersion, d.DriverDir, playwrightCoreVersion)
	}
	if d.Node == "" {
		if p, err := exec.LookPath("node"); err == nil {
			d.Node = p
		} else {
			t.Skip("node not found: run scripts/bootstrap.sh (Debian package nodejs) or set PLAYWRIGHT_NODEJS_PATH")
		}
	}
	return d
}

// repoRoot walks up from the working directory to the directory holding
// go.mod.
func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
