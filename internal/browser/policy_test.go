package browser

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// fakeDNS is a resolver for the policy: names map to addresses; unknown
// names are NXDOMAIN. It fails the test if asked to resolve an IP literal,
// which must never be looked up.
func fakeDNS(t *testing.T, table map[string][]string) func(context.Context, string, string) ([]netip.Addr, error) {
	return func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if _, err := netip.ParseAddr(host); err == nil {
			t.Errorf("resolver called with IP literal %q", host)
		}
		addrs, ok := table[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

func TestURLPolicyCheck(t *testing.T) {
	t.Parallel()
	dns := map[string][]string{
		"example.com":        {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"localhost":          {"127.0.0.1", "::1"},
		"rebind.test":        {"93.184.216.34", "10.0.0.1"}, // one private answer denies the name
		"metadata.test":      {"169.254.169.254"},
		"127.0.0.1.nip.io":   {"127.0.0.1"},
		"v6private.test":     {"fd00::1"},
		"internal.corp.test": {"10.1.2.3"},
	}
	const (
		allow   = "allow"
		block   = "block"
		dnsFail = "dns" // not a denial: the proxy resolves again
	)
	tests := []struct {
		url    string
		want   string
		reason string // substring of the BlockedURLError reason
	}{
		// Public destinations.
		{"https://example.com/", allow, ""},
		{"HTTPS://EXAMPLE.COM/path?q=1#x", allow, ""},
		{"http://example.com:8080/", allow, ""},
		{"http://8.8.8.8/", allow, ""},
		{"http://[2606:4700::1111]/", allow, ""},
		{"about:blank", allow, ""},

		// Schemes.
		{"file:///etc/passwd", block, "scheme file"},
		{"FILE:///etc/passwd", block, "scheme file"},
		{"chrome://settings", block, "scheme chrome"},
		{"chrome-extension://abc/x.html", block, "scheme chrome-extension"},
		{"data:text/html,<h1>hi</h1>", block, "scheme data"},
		{"javascript:alert(1)", block, "scheme javascript"},
		{"ftp://example.com/", block, "scheme ftp"},
		{"view-source:http://example.com/", block, "scheme view-source"},
		{"ws://example.com/", block, "scheme ws"},
		{"about:config", block, "about:blank"},
		{"example.com", block, "no scheme"},
		{"//example.com/x", block, "no scheme"},
		{"", block, "no scheme"},
		{"http:///nohost", block, "no host"},

		// Loopback, private, link-local, CGNAT, multicast, unspecified.
		{"http://127.0.0.1/", block, "loopback"},
		{"http://127.9.9.9:8080/", block, "loopback"},
		{"http://[::1]/", block, "loopback"},
		{"http://10.0.0.1/", block, "private"},
		{"http://172.16.0.1/", block, "private"},
		{"http://172.31.255.255/", block, "private"},
		{"http://192.168.1.1/", block, "private"},
		{"http://[fc00::1]/", block, "private"},
		{"http://[fd12:3456::1]/", block, "private"},
		{"http://169.254.169.254/latest/meta-data/", block, "link-local"},
		{"http://[fe80::1]/", block, "link-local"},
		{"http://[fe80::1%25eth0]/", block, "link-local"},
		{"http://100.64.0.1/", block, "CGNAT"},
		{"http://100.100.100.200/", block, "CGNAT"}, // Alibaba Cloud metadata
		{"http://0.0.0.0:8080/", block, "unspecified"},
		{"http://0.1.2.3/", block, "this network"},
		{"http://[::]/", block, "unspecified"},
		{"http://224.0.0.1/", block, "multicast"},
		{"http://[ff02::1]/", block, "multicast"},
		{"http://255.255.255.255/", block, "reserved"},
		{"http://198.18.0.1/", block, "benchmarking"},

		// IPv4 hidden in IPv6.
		{"http://[::ffff:127.0.0.1]/", block, "loopback"},
		{"http://[::ffff:169.254.169.254]/", block, "link-local"},
		{"http://[::ffff:a9fe:a9fe]/", block, "link-local"},
		{"http://[64:ff9b::a9fe:a9fe]/", block, "embedding 169.254.169.254"},
		{"http://[2002:7f00:1::]/", block, "embedding 127.0.0.1"},
		{"http://[::127.0.0.1]/", block, "IPv4-compatible"},

		// The IPv4 spellings a browser accepts.
		{"http://2130706433/", block, "loopback"},
		{"http://0x7f000001/", block, "loopback"},
		{"http://0177.0.0.1/", block, "loopback"},
		{"http://127.1/", block, "loopback"},
		{"http://0x7f.1/", block, "loopback"},
		{"http://017700000001/", block, "loopback"},
		{"http://0xa9.0xfe.0xa9.0xfe/", block, "link-local"},
		{"http://127.0.0.1./", block, "loopback"},
		{"http://256.0.0.1/", block, "invalid IPv4"},
		{"http://1.2.3.4.5/", block, "invalid IPv4"},
		{"http://0x100000000/", block, "invalid IPv4"},

		// Names are resolved; every answer must be public.
		{"http://localhost/", block, "localhost resolves to 127.0.0.1, a loopback"},
		{"http://LOCALHOST./", block, "loopback"},
		{"http://rebind.test/", block, "rebind.test resolves to 10.0.0.1, a private"},
		{"http://metadata.test/", block, "link-local"},
		{"http://127.0.0.1.nip.io/", block, "loopback"},
		{"http://v6private.test/", block, "private"},

		// Userinfo does not change the host.
		{"http://example.com@127.0.0.1/", block, "loopback"},
		{"http://user:pass@10.0.0.1/", block, "private"},

		// Unresolvable names are not denied here.
		{"http://nxdomain.test/", dnsFail, ""},
	}
	p := &URLPolicy{LookupNetIP: fakeDNS(t, dns)}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			err := p.Check(context.Background(), tc.url)
			var blocked *BlockedURLError
			isBlocked := errors.As(err, &blocked)
			switch tc.want {
			case allow:
				if err != nil {
					t.Fatalf("Check(%q) = %v, want allowed", tc.url, err)
				}
			case block:
				if !isBlocked {
					t.Fatalf("Check(%q) = %v, want *BlockedURLError", tc.url, err)
				}
				if !strings.Contains(blocked.Reason, tc.reason) {
					t.Errorf("reason %q does not mention %q", blocked.Reason, tc.reason)
				}
				if blocked.URL != tc.url {
					t.Errorf("error URL = %q, want %q", blocked.URL, tc.url)
				}
				if got := Classify(err); got != "blocked_url" {
					t.Errorf("Classify = %q, want blocked_url", got)
				}
			case dnsFail:
				var dnsErr *net.DNSError
				if isBlocked || !errors.As(err, &dnsErr) {
					t.Fatalf("Check(%q) = %v, want a *net.DNSError", tc.url, err)
				}
				if got := Classify(err); got != "network_error" {
					t.Errorf("Classify = %q, want network_error", got)
				}
			}
		})
	}
}

func TestURLPolicyAllowPrivate(t *testing.T) {
	t.Parallel()
	p := &URLPolicy{AllowPrivate: true, LookupNetIP: fakeDNS(t, map[string][]string{"localhost": {"127.0.0.1"}})}
	for _, u := range []string{"http://127.0.0.1:8080/", "http://localhost/", "http://169.254.169.254/", "http://[::1]/", "http://10.0.0.1/"} {
		if err := p.Check(context.Background(), u); err != nil {
			t.Errorf("AllowPrivate: Check(%q) = %v, want allowed", u, err)
		}
	}
	// Schemes are checked whatever AllowPrivate says.
	for _, u := range []string{"file:///etc/passwd", "javascript:alert(1)", "data:text/html,x", "chrome://version"} {
		var b *BlockedURLError
		if err := p.Check(context.Background(), u); !errors.As(err, &b) {
			t.Errorf("AllowPrivate: Check(%q) = %v, want blocked", u, err)
		}
	}
}

func TestURLPolicyAllowHosts(t *testing.T) {
	t.Parallel()
	p := &URLPolicy{
		AllowHosts:  []string{"127.0.0.1:8080", "Internal.Corp.Test", "[::1]:9000"},
		LookupNetIP: fakeDNS(t, map[string][]string{"internal.corp.test": {"10.1.2.3"}}),
	}
	tests := []struct {
		url     string
		allowed bool
	}{
		{"http://127.0.0.1:8080/", true},
		{"http://127.0.0.1:8081/", false}, // another port of an allowed host
		{"http://127.0.0.1/", false},
		{"http://internal.corp.test/", true}, // any port
		{"https://INTERNAL.corp.test:8443/", true},
		{"http://[::1]:9000/", true},
		{"http://[::1]:9001/", false},
		{"http://10.1.2.3/", false}, // the address itself is not allowed, only the name
		{"file:///etc/passwd", false},
	}
	for _, tc := range tests {
		err := p.Check(context.Background(), tc.url)
		if (err == nil) != tc.allowed {
			t.Errorf("Check(%q) = %v, want allowed=%v", tc.url, err, tc.allowed)
		}
	}
}

func TestParseHostIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host   string
		want   string // "" for a domain name
		hasErr bool
	}{
		{"example.com", "", false},
		{"1.2.3.com", "", false},
		{"0x7f.example", "", false},
		{"127.0.0.1", "127.0.0.1", false},
		{"127.1", "127.0.0.1", false},
		{"127.0.1", "127.0.0.1", false},
		{"2130706433", "127.0.0.1", false},
		{"0x7F000001", "127.0.0.1", false},
		{"0177.0.0.01", "127.0.0.1", false},
		{"0x", "0.0.0.0", false},
		{"1.2.3.4.", "1.2.3.4", false},
		{"::1", "::1", false},
		{"256.1.1.1", "", true},
		{"1.2.3.256", "", true},
		{"08.1.1.1", "", true}, // 8 is not an octal digit
		{"1.2.3.4.5", "", true},
		{"4294967296", "", true},
	}
	for _, tc := range tests {
		a, isIP, err := parseHostIP(tc.host)
		if (err != nil) != tc.hasErr {
			t.Errorf("parseHostIP(%q) error = %v, want error %v", tc.host, err, tc.hasErr)
			continue
		}
		if tc.hasErr {
			continue
		}
		if tc.want == "" {
			if isIP {
				t.Errorf("parseHostIP(%q) = %v, want a domain name", tc.host, a)
			}
			continue
		}
		if !isIP || a.String() != tc.want {
			t.Errorf("parseHostIP(%q) = %v (ip=%v), want %s", tc.host, a, isIP, tc.want)
		}
	}
}
