package browser

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/playwright-community/playwright-go"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	pwTimeout := fmt.Errorf("%w: %w: %w", playwright.ErrPlaywright, playwright.ErrTimeout, errors.New("Timeout 2000ms exceeded."))
	pwClosed := fmt.Errorf("%w: %w: %w", playwright.ErrPlaywright, playwright.ErrTargetClosed, errors.New("Target page, context or browser has been closed"))
	tests := []struct {
		name string
		err  error
		want core.ErrorType
	}{
		{"nil", nil, core.ErrNone},
		{"blocked", &BlockedURLError{URL: "file:///etc/passwd", Reason: "scheme file not allowed"}, core.ErrBlockedURL},
		{"wrapped blocked", fmt.Errorf("step 3: %w", &BlockedURLError{}), core.ErrBlockedURL},
		{"timeout", &TimeoutError{Op: "goto", Err: pwTimeout}, core.ErrTimeout},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), core.ErrTimeout},
		{"playwright timeout", pwTimeout, core.ErrTimeout},
		{"net error", &NetworkError{Code: "ERR_CONNECTION_REFUSED"}, core.ErrNetwork},
		{"net timed out", &NetworkError{Code: "ERR_TIMED_OUT"}, core.ErrTimeout},
		{"net message", errors.New("page.goto: net::ERR_NAME_NOT_RESOLVED at http://nx.test/"), core.ErrNetwork},
		{"net timed out message", errors.New("page.goto: net::ERR_TIMED_OUT at http://x/"), core.ErrTimeout},
		{"dns", &net.DNSError{Err: "no such host", Name: "nx.test"}, core.ErrNetwork},
		{"dial", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, core.ErrNetwork},
		{"browser", &BrowserError{Op: "goto", Err: errors.New("x")}, core.ErrBrowser},
		{"target closed", pwClosed, core.ErrBrowser},
		{"target closed message", errors.New("Target page, context or browser has been closed"), core.ErrBrowser},
		{"driver gone", errors.New("Frame.Goto http://x/: Connection closed"), core.ErrBrowser},
		{"page crashed", errors.New("page.goto: Navigation failed because page crashed!"), core.ErrBrowser},
		{"element", &ElementError{Op: "click", Selector: "#x", Reason: "no element matches", Err: &TimeoutError{Err: pwTimeout}}, core.ErrRuntime},
		{"download", &DownloadRefusedError{URL: "http://x/file.bin"}, core.ErrRuntime},
		{"pool closed", fmt.Errorf("goto: %w", ErrPoolClosed), core.ErrSystem},
		{"cancelled", fmt.Errorf("goto: %w", context.Canceled), core.ErrSystem},
		{"missing", &MissingDependencyError{What: "chromium"}, core.ErrSystem},
		{"script error", errors.New("ReferenceError: foo is not defined"), core.ErrRuntime},
	}
	for _, tc := range tests {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify(%v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{&BlockedURLError{URL: "http://user:secret@10.0.0.1/x", Reason: "10.0.0.1 is a private address"},
			"blocked by URL policy: http://***@10.0.0.1/x: 10.0.0.1 is a private address"},
		{&NetworkError{URL: "http://x/", Code: "ERR_CONNECTION_REFUSED", Err: errors.New("page.goto: net::ERR_CONNECTION_REFUSED\nCall log:\n  - navigating")},
			"navigating to http://x/: net::ERR_CONNECTION_REFUSED: page.goto: net::ERR_CONNECTION_REFUSED"},
		{&MissingDependencyError{What: "chromium", Path: "/usr/bin/chromium", Fix: "apt-get install chromium"},
			"chromium not found (looked at /usr/bin/chromium): apt-get install chromium"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q\nwant      %q", got, tc.want)
		}
	}
}
