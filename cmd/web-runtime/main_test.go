package main

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The variables this binary reads, and their defaults, are docs/configuration.md's.
func TestConfigDocumented(t *testing.T) {
	testsupport.CheckEnvDocumented(t, &config{}, metricsAddr, "Shared by all services:", "Both runtimes:", "Web runtime:")
}

func TestHostAliases(t *testing.T) {
	if f, fw, err := hostAliases(nil); f != nil || fw != nil || err != nil {
		t.Fatalf("no aliases: %v, %v, %v; want the policy's default resolver", f != nil, fw, err)
	}
	for _, bad := range []map[string]string{
		{"demo-site": "not-an-ip"},
		{"demo-site:8765": "127.0.0.1"},        // a port needs an address:port
		{"demo-site:8765": "localhost:41000"},  // a name
		{"demo-site:99999": "127.0.0.1:41000"}, // no such port
	} {
		if _, _, err := hostAliases(bad); err == nil {
			t.Errorf("%v was accepted", bad)
		}
	}
	lookup, forward, err := hostAliases(map[string]string{" Demo-Site ": "127.0.0.1", "Demo-Site:8765": "127.0.0.1:41000"})
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := lookup(context.Background(), "ip", "demo-site")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("demo-site = %v, %v; want 127.0.0.1", addrs, err)
	}
	if got := forward["demo-site:8765"]; got != netip.MustParseAddrPort("127.0.0.1:41000") {
		t.Fatalf("forward = %v", forward)
	}
	// A name alias is not an exemption: the address is checked unless the
	// name is allowed. A forward is: it names one destination.
	p := browser.URLPolicy{LookupNetIP: lookup}
	var blocked *browser.BlockedURLError
	if err := p.Check(context.Background(), "http://demo-site:8766/"); !errors.As(err, &blocked) {
		t.Errorf("Check(demo-site -> loopback) = %v, want blocked", err)
	}
	p.AllowHosts = []string{"demo-site:8766"}
	if err := p.Check(context.Background(), "http://demo-site:8766/"); err != nil {
		t.Errorf("Check(allowed demo-site) = %v", err)
	}
	p = browser.URLPolicy{LookupNetIP: lookup, Forward: forward}
	if err := p.Check(context.Background(), "http://demo-site:8765/"); err != nil {
		t.Errorf("Check(forwarded demo-site) = %v", err)
	}
}
