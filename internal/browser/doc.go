// Package browser drives the web runtime's Chromium through playwright-go: a
// Pool of isolated per-task Sessions, the URL policy that keeps tasks off
// private networks, and the actions and observations of the web agent.
//
//	pool, err := browser.NewPool(ctx, browser.Config{MaxConcurrent: 4})
//	defer pool.Close()
//	s, err := pool.Acquire(taskCtx) // blocks while 4 sessions are open
//	defer s.Close()
//	err = s.Goto(taskCtx, startURL)
//	err = s.FillAndSubmit(taskCtx, "input[name=q]", "golang")
//	obs, err := s.Observe(taskCtx)
//	errType := browser.Classify(err) // the step's error_type
//
// # Installation
//
// Nothing is downloaded at run time. Chromium is the system one
// (/usr/bin/chromium-headless-shell, Debian package chromium-headless-shell,
// else the full /usr/bin/chromium); the Playwright driver is npm
// playwright-core 1.60.0, the version playwright-go v0.6000.0 speaks, laid
// out by scripts/bootstrap.sh in .tools/playwright-driver; Node.js runs it.
// NewPool (and CheckDependencies, for a startup check) reports a missing
// piece as a *MissingDependencyError that says what to install.
//
// # Pool and sessions
//
// One Chromium per Pool, each with its own driver process. Every task gets a
// fresh browser context (cookies, storage, cache and egress proxy of its own)
// with one 1280×720 page; Session.Close, or the end of the ctx given to
// Acquire, closes it whatever happened. A semaphore of MaxConcurrent slots
// bounds the contexts, so memory does not grow with the queue.
//
// A Chromium or driver that dies (crash, OOM kill, SIGKILL) is noticed by
// Playwright's disconnect event, by the failing calls, or within a second by
// a watchdog; the pool kills what is left of it and launches a replacement at
// once. The sessions on the dead browser fail with *BrowserError
// (browser_error) immediately, never hang. After RecycleAfter contexts the
// browser is recycled by draining: new sessions go to a freshly launched
// browser while the old one finishes its own and is then closed, so tasks in
// flight are never disturbed (at the cost of two browsers for a while).
// Chromium runs in a session of its own (Playwright starts it detached), so
// when a browser is retired, crashes or is closed, whatever is left of it,
// re-parented orphans included, is found in /proc by session id and killed:
// no Chromium outlives its Pool. In a container, run with an init (docker
// `init: true`) so that processes re-parented to PID 1 are reaped.
//
// # Timeouts
//
// Playwright calls cannot be cancelled, so each call gets a Playwright
// timeout: the smaller of NavigationTimeout/ActionTimeout and what is left of
// the ctx. When a ctx is done the session's context is closed, which ends any
// call in flight; a call that outlives its timeout (a page stuck in an
// endless script never answers an evaluate) aborts the session too.
//
// # URL policy
//
// http and https only; loopback, private, link-local (169.254.169.254),
// CGNAT, multicast, reserved and unspecified addresses denied unless
// AllowPrivate (see URLPolicy). It is enforced at two points:
//
//   - Goto checks the URL, resolving its host, before the browser sees it.
//   - An egress proxy per session (a forward proxy on a loopback port, set as
//     the context's proxy for every destination, loopback included) carries
//     all the context's traffic: subresources, frames, fetch, beacons, every
//     redirect hop, WebSockets and popups. It resolves each host itself,
//     denies the host if any address is denied, and connects to exactly the
//     address it checked. Other schemes never reach the network from a
//     page: Chromium refuses file: and chrome: URLs to web pages.
//
// There is no Playwright route: intercepting every request costs a round
// trip through the driver and the pool per request (and switches off the
// HTTP cache), about a tenth of a task's CPU, for no check the proxy does
// not make. Images are not fetched at all unless LoadImages: that is a
// Blink setting of the browser.
//
// Because Chromium hands every connection to the proxy and never resolves the
// host itself, DNS rebinding (a name that answers a public address to the
// check and a private one to the browser) does not work here; a design that
// checks a name and lets Chromium resolve it again would be open to it.
// Residual limits: Chromium's own background requests (not page traffic) use
// the default network context, not the proxy; DNS-prefetch hints may make
// Chromium look names up (no connection follows); WebRTC is confined to
// proxied TCP by --force-webrtc-ip-handling-policy=disable_non_proxied_udp;
// the proxy listens on 127.0.0.1 without authentication during a session,
// so a local process could use it, but only to reach what the policy allows.
//
// # Errors
//
// Classify maps every error to a step's error_type: blocked_url
// (*BlockedURLError: the policy), timeout (*TimeoutError, deadlines),
// network_error (*NetworkError: DNS, refused, TLS, too many redirects),
// browser_error (*BrowserError: browser, driver or page gone), runtime_error
// (*ElementError: a selector that matches nothing or does not parse;
// *DownloadRefusedError), system_error (shutdown: ErrPoolClosed,
// context.Canceled; *MissingDependencyError). An HTTP error status is not an
// error: a 404 page is an Observation with Status 404.
//
// An observation is the viewport, read at one moment, after the step has
// settled (load, no request in flight, no content change for QuietWindow).
// Dialogs are answered (dismissed unless AnswerNextDialog says otherwise),
// popups kept as tabs (up to 5; SwitchTab), downloads kept up to
// MaxDownloadBytes when KeepDownloads says where, else refused; none can
// stall a task, and each is an event of the next observation. Stats
// exposes the gauges and counters the runtime turns into metrics.
package browser
