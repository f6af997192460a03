package browser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Headers the egress proxy puts on the responses it makes up, so that the
// session can tell its own refusals from the site's.
const (
	headerBlocked    = "X-Adp-Blocked"     // value: the policy's reason
	headerProxyError = "X-Adp-Proxy-Error" // value: "ERR_CONNECTION_REFUSED: <detail>"
)

const (
	proxyDialTimeout       = 10 * time.Second
	proxyReadHeaderTimeout = 30 * time.Second
	proxyIdleTimeout       = 60 * time.Second
	// proxyEventsKept bounds the per-session log of refused CONNECTs.
	proxyEventsKept = 32
)

// egressProxy is an HTTP forward proxy on a loopback port, one per session
// (per browser context). Chromium sends every request of the context to it
// (plain HTTP as absolute-form requests, HTTPS and WebSockets as CONNECT),
// so it sees each redirect hop and resolves every host name itself: it checks
// the addresses with the URL policy and dials exactly the address it checked,
// which closes the DNS-rebinding gap a check-then-let-Chromium-resolve design
// has.
//
// Refusals: a plain HTTP request gets a made-up 403 (blocked) or 502
// (connection failed) response carrying headerBlocked or headerProxyError; a
// CONNECT gets the same status, which Chromium reports as
// net::ERR_TUNNEL_CONNECTION_FAILED, so the proxy also remembers the last
// refusals by host:port for the session to look up.
type egressProxy struct {
	policy    *URLPolicy
	token     string // prefixes the values of the proxy's own headers
	onBlocked func(*BlockedURLError)

	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	rp        *httputil.ReverseProxy
	ctx       context.Context
	cancel    context.CancelFunc

	mu      sync.Mutex
	tunnels map[net.Conn]struct{}
	events  []proxyEvent
	closed  bool
}

type proxyEvent struct {
	hostport string
	err      error // *BlockedURLError or *NetworkError
}

func startEgressProxy(policy *URLPolicy, token string, onBlocked func(*BlockedURLError)) (*egressProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &egressProxy{
		policy:    policy,
		token:     token,
		onBlocked: onBlocked,
		ln:        ln,
		ctx:       ctx,
		cancel:    cancel,
		tunnels:   map[net.Conn]struct{}{},
	}
	p.transport = &http.Transport{
		Proxy:                 nil, // never chain to HTTP_PROXY from the environment
		DialContext:           p.dial,
		ForceAttemptHTTP2:     false,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       proxyIdleTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass the site's encoding through untouched
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		Transport:    p.transport,
		ErrorHandler: p.forwardError,
		ErrorLog:     discardLogger,
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: proxyReadHeaderTimeout,
		IdleTimeout:       proxyIdleTimeout,
		ErrorLog:          discardLogger,
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's address for Playwright's proxy option.
func (p *egressProxy) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy and cuts every connection it holds, tunnels included.
func (p *egressProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	tunnels := p.tunnels
	p.tunnels = nil
	p.mu.Unlock()

	p.cancel()
	_ = p.srv.Close()
	for c := range tunnels {
		_ = c.Close()
	}
	p.transport.CloseIdleConnections()
}

func (p *egressProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.serveConnect(w, r)
		return
	}
	if !r.URL.IsAbs() || (r.URL.Scheme != "http") {
		// Chromium sends https through CONNECT; anything else reaching this
		// port is not from the browser (or is the proxy reached through itself).
		http.Error(w, "egress proxy: absolute http URL required", http.StatusBadRequest)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// forwardError answers a plain HTTP request the proxy could not forward.
func (p *egressProxy) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	var blocked *BlockedURLError
	if errors.As(err, &blocked) {
		b := &BlockedURLError{URL: r.URL.String(), Reason: blocked.Reason}
		p.reportBlocked(b)
		p.writeBlocked(w, b)
		return
	}
	code := dialErrorCode(err)
	w.Header().Set(headerProxyError, p.token+" "+code+": "+firstLine(err.Error()))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "net::%s: %s\n", code, firstLine(err.Error()))
}

func (p *egressProxy) serveConnect(w http.ResponseWriter, r *http.Request) {
	hostport := r.Host
	upstream, err := p.dial(r.Context(), "tcp", hostport)
	if err != nil {
		var blocked *BlockedURLError
		if errors.As(err, &blocked) {
			b := &BlockedURLError{URL: "https://" + hostport + "/", Reason: blocked.Reason}
			p.reportBlocked(b)
			p.remember(hostport, b)
			p.writeBlocked(w, b)
			return
		}
		code := dialErrorCode(err)
		p.remember(hostport, &NetworkError{URL: "https://" + hostport + "/", Code: code, Err: err})
		w.Header().Set(headerProxyError, p.token+" "+code+": "+firstLine(err.Error()))
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = upstream.Close()
		http.Error(w, "egress proxy: hijacking not supported", http.StatusInternalServerError)
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		_ = upstream.Close()
		return
	}
	if !p.track(client, upstream) {
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	defer p.untrack(client, upstream)
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		// Bytes the client sent after the CONNECT head are already buffered.
		if n := buf.Reader.Buffered(); n > 0 {
			pending, _ := buf.Reader.Peek(n)
			if _, err := upstream.Write(pending); err != nil {
				done <- struct{}{}
				return
			}
		}
		_, _ = io.Copy(upstream, client)
		closeWrite(upstream)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(client, upstream)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
}

// dial resolves and checks host:port with the policy (or takes its Forward
// entry) and connects to one of the checked destinations. It never lets the system resolve the name again.
func (p *egressProxy) dial(ctx context.Context, network, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, &BlockedURLError{URL: hostport, Reason: "invalid host:port"}
	}
	dests, err := p.policy.Destinations(ctx, host, port)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: proxyDialTimeout}
	var errs []error
	for _, a := range dests {
		c, err := d.DialContext(ctx, network, a.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (p *egressProxy) reportBlocked(b *BlockedURLError) {
	if p.onBlocked != nil {
		p.onBlocked(b)
	}
}

func (p *egressProxy) remember(hostport string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, proxyEvent{hostport: strings.ToLower(hostport), err: err})
	if len(p.events) > proxyEventsKept {
		p.events = p.events[len(p.events)-proxyEventsKept:]
	}
}

// lastRefusal returns the last refusal of a CONNECT to hostport, if any.
func (p *egressProxy) lastRefusal(hostport string) error {
	hostport = strings.ToLower(hostport)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		if p.events[i].hostport == hostport {
			return p.events[i].err
		}
	}
	return nil
}

func (p *egressProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range conns {
		p.tunnels[c] = struct{}{}
	}
	return true
}

func (p *egressProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	for _, c := range conns {
		delete(p.tunnels, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *egressProxy) writeBlocked(w http.ResponseWriter, b *BlockedURLError) {
	w.Header().Set(headerBlocked, p.token+" "+b.Reason)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<!doctype html><title>Blocked by URL policy</title><p>Blocked by URL policy: %s</p>\n",
		htmlEscape(b.Reason))
}

// dialErrorCode names a dial failure the way Chromium names its net errors,
// so that proxied and direct failures read the same in trajectories.
func dialErrorCode(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return "ERR_NAME_NOT_RESOLVED"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ERR_CONNECTION_REFUSED"
	case errors.Is(err, syscall.ECONNRESET):
		return "ERR_CONNECTION_RESET"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "ERR_ADDRESS_UNREACHABLE"
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "ERR_CONNECTION_TIMED_OUT"
	}
	return "ERR_CONNECTION_FAILED"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

func htmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
