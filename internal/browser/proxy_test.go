package browser

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a loopback HTTP server that counts the requests it gets.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(cs.Close)
	return cs
}

func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func proxyClient(p *egressProxy) *http.Client {
	pu, _ := url.Parse(p.URL())
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(pu)},
		// The browser follows redirects itself, hop by hop through the proxy.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func TestEgressProxy(t *testing.T) {
	t.Parallel()
	private := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secret") })
	public := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, private.URL+"/secret", http.StatusFound)
		default:
			fmt.Fprint(w, "public page")
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String() // nothing listens here
	ln.Close()
	var blocked atomic.Int64
	policy := &URLPolicy{AllowHosts: []string{hostOf(t, public.URL), closedAddr}}
	p, err := startEgressProxy(policy, "tok", func(*BlockedURLError) { blocked.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	client := proxyClient(p)

	t.Run("allowed host is forwarded", func(t *testing.T) {
		resp, err := client.Get(public.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "public page" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("redirect is passed back, not followed", func(t *testing.T) {
		before := private.hits.Load()
		resp, err := client.Get(public.URL + "/redirect")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status %d, want 302", resp.StatusCode)
		}
		if private.hits.Load() != before {
			t.Fatal("the proxy followed the redirect to the private server")
		}
	})

	t.Run("private hop is refused with a signed header", func(t *testing.T) {
		before := blocked.Load()
		resp, err := client.Get(private.URL + "/secret")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		if h := resp.Header.Get(headerBlocked); !strings.HasPrefix(h, "tok ") || !strings.Contains(h, "loopback") {
			t.Fatalf("%s = %q", headerBlocked, h)
		}
		if strings.Contains(string(body), "secret") || private.hits.Load() != 0 {
			t.Fatalf("private server reached: body %q, hits %d", body, private.hits.Load())
		}
		if blocked.Load() != before+1 {
			t.Fatalf("onBlocked called %d times, want 1", blocked.Load()-before)
		}
	})

	t.Run("CONNECT to a private address is refused and remembered", func(t *testing.T) {
		status := rawConnect(t, p, hostOf(t, private.URL))
		if status != http.StatusForbidden {
			t.Fatalf("CONNECT status %d, want 403", status)
		}
		var b *BlockedURLError
		if err := p.lastRefusal(hostOf(t, private.URL)); !errors.As(err, &b) {
			t.Fatalf("lastRefusal = %v, want *BlockedURLError", err)
		}
		if private.hits.Load() != 0 {
			t.Fatal("private server reached through CONNECT")
		}
	})

	t.Run("connection refused is a 502 with the net error code", func(t *testing.T) {
		resp, err := client.Get("http://" + closedAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || !strings.HasPrefix(resp.Header.Get(headerProxyError), "tok ERR_CONNECTION_REFUSED") {
			t.Fatalf("got %d %s=%q", resp.StatusCode, headerProxyError, resp.Header.Get(headerProxyError))
		}
	})
}

// TestEgressProxyDialsTheCheckedAddress shows that the proxy connects to the
// address its own resolution checked: the name "allowed.test" exists only in
// the policy's resolver, so the request can only succeed if the proxy never
// asks the system resolver again (no DNS-rebinding window).
func TestEgressProxyDialsTheCheckedAddress(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "host="+r.Host) })
	_, port, _ := net.SplitHostPort(hostOf(t, srv.URL))
	policy := &URLPolicy{
		AllowHosts:  []string{"allowed.test"},
		LookupNetIP: fakeDNS(t, map[string][]string{"allowed.test": {"127.0.0.1"}, "evil.test": {"127.0.0.1"}}),
	}
	p, err := startEgressProxy(policy, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	client := proxyClient(p)

	resp, err := client.Get("http://allowed.test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "host=allowed.test:"+port {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}

	resp, err = client.Get("http://evil.test:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("evil.test (resolving to loopback): status %d, want 403", resp.StatusCode)
	}
	if srv.hits.Load() != 1 {
		t.Fatalf("server hits = %d, want 1", srv.hits.Load())
	}
}

func TestEgressProxyTunnelAndClose(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "over tls")
	}))
	t.Cleanup(tlsSrv.Close)
	p, err := startEgressProxy(&URLPolicy{AllowPrivate: true}, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(p.URL())
	tr := tlsSrv.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(pu)
	tr.DisableKeepAlives = false
	client := &http.Client{Transport: tr}
	resp, err := client.Get(tlsSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "over tls" {
		t.Fatalf("body %q", body)
	}

	// An open tunnel is cut by Close.
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hostOf(t, tlsSrv.URL), hostOf(t, tlsSrv.URL))
	br := bufio.NewReader(conn)
	cr, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || cr.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", cr, err)
	}
	tlsConn := tls.Client(&bufferedConn{Conn: conn, r: br}, &tls.Config{InsecureSkipVerify: true})
	if err := tlsConn.HandshakeContext(context.Background()); err != nil {
		t.Fatalf("TLS through tunnel: %v", err)
	}
	p.Close()
	// The tunnel is cut: the read ends (EOF or reset) instead of waiting for
	// the deadline.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(tlsConn); isTimeout(err) {
		t.Fatalf("tunnel still open after Close: %v", err)
	}
	// The listener is closed. (Dialing its port again would not tell: a
	// parallel test's listener may have been given the freed port.)
	if err := p.ln.(*net.TCPListener).SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("proxy's listener not closed after Close: %v", err)
	}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// rawConnect sends a CONNECT for target through the proxy and returns the
// status.
func rawConnect(t *testing.T, p *egressProxy, target string) int {
	t.Helper()
	pu, _ := url.Parse(p.URL())
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// TestEgressProxyForward: a Forward entry sends the host:port tasks name to
// its one destination, wherever that runs, and to nothing else: the same
// name at another port is not forwarded (and does not resolve), and the
// server listening on the forwarded port of 127.0.0.1 itself (the stand-in
// for an unrelated server on 127.0.0.1:8765) is never reached.
func TestEgressProxyForward(t *testing.T) {
	t.Parallel()
	site := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "site host="+r.Host) })
	other := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "unrelated") })
	siteAddr := netip.MustParseAddrPort(hostOf(t, site.URL))
	_, otherPort, _ := net.SplitHostPort(hostOf(t, other.URL))
	policy := &URLPolicy{
		Forward:     map[string]netip.AddrPort{"demo-site:" + otherPort: siteAddr},
		LookupNetIP: fakeDNS(t, nil),
	}
	if err := policy.Check(context.Background(), "http://DEMO-SITE:"+otherPort+"/form"); err != nil {
		t.Errorf("Check(forwarded) = %v, want allowed", err)
	}
	p, err := startEgressProxy(policy, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	client := proxyClient(p)

	resp, err := client.Get("http://demo-site:" + otherPort + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "site host=demo-site:"+otherPort {
		t.Fatalf("forwarded: got %d %q, want the site", resp.StatusCode, body)
	}
	for _, u := range []string{
		"http://demo-site:" + strconv.Itoa(int(siteAddr.Port())) + "/", // not forwarded: resolved, and unknown
		"http://127.0.0.1:" + otherPort + "/",                          // loopback, not allowed
	} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("%s: status 200, want a refusal", u)
		}
	}
	if site.hits.Load() != 1 || other.hits.Load() != 0 {
		t.Errorf("site hits %d, unrelated hits %d; want 1 and 0", site.hits.Load(), other.hits.Load())
	}
}
