package main

import (
	"testing"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The web runtime's defaults are the browser package's.
func TestDefaultsAreTheBrowsers(t *testing.T) {
	testsupport.CheckEnvDefaults(t, &config{}, map[string]any{
		"MAX_CONCURRENT":         browser.DefaultMaxConcurrent,
		"BROWSER_RECYCLE_AFTER":  browser.DefaultRecycleAfter,
		"WEB_NAVIGATION_TIMEOUT": browser.DefaultNavigationTimeout,
		"WEB_ACTION_TIMEOUT":     browser.DefaultActionTimeout,
		"WEB_SETTLE_TIMEOUT":     browser.DefaultSettleTimeout,
		"WEB_QUIET_WINDOW":       browser.DefaultQuietWindow,
		"WEB_MAX_TEXT_CHARS":     browser.DefaultMaxTextChars,
		"WEB_MAX_SNAPSHOT_CHARS": browser.DefaultMaxSnapshotChars,
		"WEB_MAX_DOWNLOAD_MB":    browser.DefaultMaxDownloadBytes >> 20,
	})
}
