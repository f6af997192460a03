package browser

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/playwright-community/playwright-go"

	"github.com/agentdataplatform/adp/internal/core"
)

// ErrPoolClosed is returned by Acquire after Close, and by the calls of a
// session that Close aborted. Classified system_error: the task did not fail,
// the runtime is shutting down.
var ErrPoolClosed = errors.New("browser: pool closed")

// ErrSessionClosed is returned by the calls of a session after its Close.
var ErrSessionClosed = errors.New("browser: session closed")

// BlockedURLError says that the URL policy denied a URL: the URL given to
// Goto, a redirect hop, or the target of a click. Classified blocked_url.
type BlockedURLError struct {
	URL    string
	Reason string // "scheme ftp not allowed", "127.0.0.1 is a loopback address", ...
}

func (e *BlockedURLError) Error() string {
	return fmt.Sprintf("blocked by URL policy: %s: %s", redactURL(e.URL), e.Reason)
}

// NetworkError is a navigation that failed below HTTP: DNS, connection
// refused or reset, TLS, too many redirects. Code is Chromium's net error name
// ("ERR_NAME_NOT_RESOLVED"). Classified network_error, except ERR_TIMED_OUT
// (timeout).
type NetworkError struct {
	URL  string
	Code string
	Err  error
}

func (e *NetworkError) Error() string {
	msg := fmt.Sprintf("navigating to %s: net::%s", redactURL(e.URL), e.Code)
	if e.Err != nil {
		msg += ": " + firstLine(e.Err.Error())
	}
	return msg
}

func (e *NetworkError) Unwrap() error { return e.Err }

// BrowserError is a failure of the browser itself: Chromium crashed or was
// killed, the page's renderer crashed, the Playwright driver died, or a
// (re)launch failed. Classified browser_error.
type BrowserError struct {
	Op  string // "launch", "goto", "click", ...
	Err error
}

func (e *BrowserError) Error() string {
	return fmt.Sprintf("browser %s: %v", e.Op, firstLine(errString(e.Err)))
}

func (e *BrowserError) Unwrap() error { return e.Err }

// ElementError is an action whose selector matched nothing (within the action
// timeout) or was not a valid selector. Classified runtime_error: the agent
// chose a wrong selector; the page and the browser are fine.
type ElementError struct {
	Op       string
	Selector string
	Reason   string // "no element matches", "invalid selector"
	Err      error
}

func (e *ElementError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Op, e.Selector, e.Reason)
}

func (e *ElementError) Unwrap() error { return e.Err }

// TimeoutError is an action or navigation that ran out of time: its own
// timeout (NavigationTimeout, ActionTimeout) or the task's deadline.
// Classified timeout.
type TimeoutError struct {
	Op  string
	Err error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: timed out: %s", e.Op, firstLine(errString(e.Err)))
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// DownloadRefusedError is a navigation that turned into a file download
// while the session keeps no downloads (with KeepDownloads, such a Goto
// succeeds and the page stays). Classified runtime_error.
type DownloadRefusedError struct {
	URL string
}

func (e *DownloadRefusedError) Error() string {
	return fmt.Sprintf("download refused: %s", redactURL(e.URL))
}

// MissingDependencyError says that Chromium, the Playwright driver or Node.js
// is missing, and what to install. The web runtime prints it and refuses to
// start. Classified system_error.
type MissingDependencyError struct {
	What string // "chromium", "playwright driver", "node"
	Path string // where it was looked for
	Fix  string // what to run or install
}

func (e *MissingDependencyError) Error() string {
	return fmt.Sprintf("%s not found (looked at %s): %s", e.What, e.Path, e.Fix)
}

// Classify maps an error of this package (or of playwright-go) to the
// error_type of a trajectory step:
//
//   - blocked_url: *BlockedURLError
//   - timeout: context.DeadlineExceeded, Playwright timeouts, *TimeoutError,
//     net::ERR_TIMED_OUT
//   - network_error: *NetworkError, DNS and dial errors, any net::ERR_* message
//   - browser_error: *BrowserError, Playwright's "target closed" (browser,
//     context or page gone), a crashed page
//   - system_error: ErrPoolClosed, context.Canceled (shutdown),
//     *MissingDependencyError
//   - runtime_error: *ElementError, *DownloadRefusedError, and anything else
//     (a JavaScript error thrown by the page while evaluating, ...)
//
// Classify(nil) is core.ErrNone.
func Classify(err error) core.ErrorType {
	if err == nil {
		return core.ErrNone
	}
	var (
		blocked *BlockedURLError
		missing *MissingDependencyError
		timeout *TimeoutError
		brErr   *BrowserError
		netErr  *NetworkError
		elemErr *ElementError
		dlErr   *DownloadRefusedError
		dnsErr  *net.DNSError
		opErr   *net.OpError
	)
	switch {
	case errors.As(err, &blocked):
		return core.ErrBlockedURL
	case errors.Is(err, ErrPoolClosed), errors.As(err, &missing):
		return core.ErrSystem
	case errors.As(err, &elemErr), errors.As(err, &dlErr):
		return core.ErrRuntime
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return core.ErrTimeout
	case errors.As(err, &brErr):
		return core.ErrBrowser
	case errors.Is(err, context.Canceled):
		return core.ErrSystem
	case errors.As(err, &netErr):
		if netErr.Code == "ERR_TIMED_OUT" {
			return core.ErrTimeout
		}
		return core.ErrNetwork
	case errors.Is(err, playwright.ErrTimeout):
		return core.ErrTimeout
	case errors.Is(err, playwright.ErrTargetClosed):
		return core.ErrBrowser
	case errors.As(err, &dnsErr), errors.As(err, &opErr):
		return core.ErrNetwork
	}
	msg := err.Error()
	switch {
	case isBrowserGoneMessage(msg):
		return core.ErrBrowser
	case strings.Contains(msg, "net::ERR_TIMED_OUT"):
		return core.ErrTimeout
	case strings.Contains(msg, "net::ERR_"):
		return core.ErrNetwork
	}
	return core.ErrRuntime
}

var netErrRE = regexp.MustCompile(`net::(ERR_[A-Z0-9_]+)`)

// netErrorCode extracts Chromium's net error name from a Playwright message
// ("page.goto: net::ERR_CONNECTION_REFUSED at http://...").
func netErrorCode(msg string) string {
	if m := netErrRE.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

// isBrowserGoneMessage recognises Playwright's wordings for a browser, context
// or page that no longer exists. Used when the error does not wrap
// playwright.ErrTargetClosed (the driver sometimes reports a crash as a plain
// Error).
func isBrowserGoneMessage(msg string) bool {
	for _, s := range []string{
		"Target page, context or browser has been closed",
		"Target closed",
		"Target crashed",
		"Browser has been closed",
		"browser has disconnected",
		"Browser closed",
		"Page crashed",
		"page crashed",
		"Navigation failed because page crashed",
		// The driver's connection is gone (the driver died).
		"Connection closed",
		"transport closed",
		"could not read protocol",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isConnectionLost recognises the errors of calls made after the Playwright
// driver died.
func isConnectionLost(msg string) bool {
	return strings.Contains(msg, "Connection closed") ||
		strings.Contains(msg, "transport closed") ||
		strings.Contains(msg, "could not read protocol")
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// firstLine drops Playwright's multi-line call logs from messages that go
// into trajectories.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// redactURL drops user:password from a URL before it goes into an error
// message, and caps its length.
func redactURL(raw string) string {
	const maxURLChars = 500
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			raw = raw[:i+3] + "***@" + rest[at+1:]
		}
	}
	if len(raw) > maxURLChars {
		raw = raw[:maxURLChars] + "..."
	}
	return raw
}
