package browser

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// URLPolicy decides which URLs a task's browser may fetch (the SSRF guard).
// Only http and https are allowed (plus about:blank as a navigation); the
// host is resolved and EVERY address it resolves to must be public: loopback,
// private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud
// metadata address 169.254.169.254, fe80::/10), shared/CGNAT (100.64.0.0/10,
// where e.g. Alibaba Cloud serves its metadata), multicast, broadcast,
// reserved and unspecified addresses are denied unless AllowPrivate. IPv4
// addresses hidden in IPv6 (::ffff:a.b.c.d, NAT64, 6to4) and the numeric
// spellings browsers accept (2130706433, 0x7f.1, 0177.0.0.1) are seen
// through.
//
// A Pool enforces it before navigating and in each session's egress proxy;
// see the package documentation.
//
// The zero value denies private addresses and uses net.DefaultResolver.
type URLPolicy struct {
	// AllowPrivate allows every address, private or not (WEB_ALLOW_PRIVATE).
	// Default false. Only schemes are still checked.
	AllowPrivate bool
	// AllowHosts are exempt from the address check: "host" (any port) or
	// "host:port", compared case-insensitively with the URL's host; IPv6 hosts
	// are written without brackets ("::1") or as "[::1]:8080". For an internal
	// service the agent must reach, and for tests.
	AllowHosts []string
	// Forward sends a "host:port" that tasks name to exactly one address and
	// port, without resolving the name: WEB_HOST_ALIASES entries of the form
	// name:port=address:port. `make run` forwards demo-site:8765, the name
	// the shipped tasks use, to wherever it serves the demo site, so that
	// moving the site moves nothing else and the tasks can reach only the
	// site, never whatever else listens on 127.0.0.1:8765. A forwarded
	// host:port is allowed: it is the operator's own service. Keys are lower
	// case ("demo-site:8765", "[::1]:80").
	Forward map[string]netip.AddrPort
	// LookupNetIP resolves a host name; default net.DefaultResolver.LookupNetIP.
	// Tests inject a fake resolver here.
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// ResolveTimeout bounds one resolution. Default 5s.
	ResolveTimeout time.Duration
}

const defaultResolveTimeout = 5 * time.Second

// deniedPrefixes are the ranges denied unless AllowPrivate, beyond what
// netip.Addr's predicates cover (loopback, private, link-local, multicast,
// unspecified).
var deniedPrefixes = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address`}, // 0.0.0.0:port reaches localhost on Linux
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (CGNAT) address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"}, // includes 255.255.255.255
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible address"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

// IPv6 ranges that embed an IPv4 address which the network may route to:
// the embedded address is checked too.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// CheckAddr reports why addr is denied, or nil if it may be contacted.
func (p *URLPolicy) CheckAddr(addr netip.Addr) error {
	if why := deniedReason(addr); why != "" && !p.AllowPrivate {
		return &BlockedURLError{URL: addr.String(), Reason: addr.String() + " is " + why}
	}
	return nil
}

// deniedReason says why addr is not a public unicast address, or "".
func deniedReason(addr netip.Addr) string {
	addr = addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	switch {
	case !addr.IsValid():
		return "not a valid address"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsPrivate():
		return "a private address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address"
	case addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	for _, d := range deniedPrefixes {
		if d.prefix.Contains(addr) {
			return d.why
		}
	}
	if addr.Is6() {
		b := addr.As16()
		var v4 netip.Addr
		switch {
		case nat64Prefix.Contains(addr):
			v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		case sixToFour.Contains(addr):
			v4 = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		}
		if v4.IsValid() {
			if why := deniedReason(v4); why != "" {
				return "an IPv6 address embedding " + v4.String() + ", " + why
			}
		}
	}
	return ""
}

// Check reports whether the browser may navigate to or fetch rawURL. It
// returns a *BlockedURLError for a denied URL, another error (a DNS failure)
// when the host could not be resolved, and nil when the URL is allowed. A
// resolution failure is not a denial: the egress proxy resolves again when
// the browser connects, and denies or reports the failure then.
func (p *URLPolicy) Check(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return &BlockedURLError{URL: rawURL, Reason: "not a valid URL"}
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http", "https":
	case "about":
		if u.Opaque == "blank" {
			return nil
		}
		return &BlockedURLError{URL: rawURL, Reason: "only about:blank is allowed"}
	case "":
		return &BlockedURLError{URL: rawURL, Reason: "not an absolute URL (no scheme)"}
	default:
		return &BlockedURLError{URL: rawURL, Reason: "scheme " + scheme + " not allowed (http and https only)"}
	}
	host := u.Hostname()
	if host == "" {
		return &BlockedURLError{URL: rawURL, Reason: "no host"}
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	if err := p.CheckHost(ctx, host, port); err != nil {
		if b, ok := err.(*BlockedURLError); ok {
			b.URL = rawURL
		}
		return err
	}
	return nil
}

// CheckHost checks a host and port as Check does for a URL.
func (p *URLPolicy) CheckHost(ctx context.Context, host, port string) error {
	_, err := p.Destinations(ctx, host, port)
	return err
}

// Destinations returns where the browser's connection to host:port goes:
// the Forward entry of host:port, else the checked addresses of Resolve at
// that port. It is what the egress proxy dials.
func (p *URLPolicy) Destinations(ctx context.Context, host, port string) ([]netip.AddrPort, error) {
	if ap, ok := p.forwarded(host, port); ok {
		return []netip.AddrPort{ap}, nil
	}
	addrs, err := p.Resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	n, _ := strconv.Atoi(port) // Resolve checked it
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a, uint16(n))
	}
	return out, nil
}

// forwarded looks host:port up in Forward.
func (p *URLPolicy) forwarded(host, port string) (netip.AddrPort, bool) {
	if len(p.Forward) == 0 {
		return netip.AddrPort{}, false
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	ap, ok := p.Forward[net.JoinHostPort(host, port)]
	return ap, ok
}

// Resolve returns the addresses the browser may connect to for host:port,
// all of them checked; it is what the egress proxy dials. A host that is an
// IP address (in any of the forms a browser accepts: "127.1", "0x7f000001",
// "2130706433") is not looked up. A denied address anywhere in the answer
// denies the host: an attacker's name that resolves to a public and a private
// address must not get a chance at the private one.
func (p *URLPolicy) Resolve(ctx context.Context, host, port string) ([]netip.Addr, error) {
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return nil, &BlockedURLError{URL: host, Reason: "no host"}
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, &BlockedURLError{URL: net.JoinHostPort(host, port), Reason: "invalid port " + port}
	}
	allowed := p.allowedHost(host, port)

	var addrs []netip.Addr
	if a, isIP, err := parseHostIP(host); err != nil {
		return nil, &BlockedURLError{URL: host, Reason: err.Error()}
	} else if isIP {
		addrs = []netip.Addr{a}
	} else {
		lookup := p.LookupNetIP
		if lookup == nil {
			lookup = net.DefaultResolver.LookupNetIP
		}
		timeout := p.ResolveTimeout
		if timeout <= 0 {
			timeout = defaultResolveTimeout
		}
		lctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		addrs, err = lookup(lctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	if allowed || p.AllowPrivate {
		return addrs, nil
	}
	for _, a := range addrs {
		if why := deniedReason(a); why != "" {
			reason := a.Unmap().String() + " is " + why
			if _, isIP, _ := parseHostIP(host); !isIP {
				reason = host + " resolves to " + a.Unmap().String() + ", " + why
			}
			return nil, &BlockedURLError{URL: net.JoinHostPort(host, port), Reason: reason}
		}
	}
	return addrs, nil
}

func (p *URLPolicy) allowedHost(host, port string) bool {
	for _, h := range p.AllowHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if hh, pp, err := net.SplitHostPort(h); err == nil {
			if strings.Trim(hh, "[]") == host && pp == port {
				return true
			}
			continue
		}
		if strings.Trim(h, "[]") == host {
			return true
		}
	}
	return false
}

// parseHostIP parses host as an IP address the way a browser does (the
// WHATWG URL standard's IPv4 parser: 1 to 4 parts, each decimal, octal with a
// leading 0, or hex with 0x; the last part fills the remaining bytes). isIP is
// false for a domain name. A host that "ends in a number" but is not a valid
// IPv4 address is an error, as in the browser.
func parseHostIP(host string) (addr netip.Addr, isIP bool, err error) {
	if strings.Contains(host, ":") {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("invalid IPv6 address %q", host)
		}
		return a.WithZone(""), true, nil
	}
	parts := strings.Split(host, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if !endsInNumber(parts[len(parts)-1]) {
		return netip.Addr{}, false, nil
	}
	if len(parts) > 4 {
		return netip.Addr{}, false, fmt.Errorf("invalid IPv4 address %q", host)
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, ok := parseIPv4Number(part)
		if !ok {
			return netip.Addr{}, false, fmt.Errorf("invalid IPv4 address %q", host)
		}
		nums[i] = n
	}
	for _, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false, fmt.Errorf("invalid IPv4 address %q", host)
		}
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false, fmt.Errorf("invalid IPv4 address %q", host)
	}
	v := last
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, nil
}

func endsInNumber(last string) bool {
	if last == "" {
		return false
	}
	if isDigits(last, 10) {
		return true
	}
	if len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") {
		return isDigits(last[2:], 16)
	}
	return false
}

func parseIPv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
		if s == "" {
			return 0, true
		}
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	if !isDigits(s, base) {
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

func isDigits(s string, base int) bool {
	for _, c := range s {
		switch {
		case c >= '0' && c <= '7':
		case c >= '8' && c <= '9' && base >= 10:
		case (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') && base == 16:
		default:
			return false
		}
	}
	return true
}
