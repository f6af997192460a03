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

func TestAliasLookup(t *testing.T) {
	if f, err := aliasLookup(nil); f != nil || err != nil {
		t.Fatalf("no aliases: %v, %v; want the policy's default resolver", f != nil, err)
	}
	if _, err := aliasLookup(map[string]string{"demo-site": "not-an-ip"}); err == nil {
		t.Fatal("an alias to a name was accepted")
	}
	lookup, err := aliasLookup(map[string]string{" Demo-Site ": "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := lookup(context.Background(), "ip", "demo-site")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("demo-site = %v, %v; want 127.0.0.1", addrs, err)
	}
	// An alias is not an exemption: the address is checked unless the name
	// is allowed.
	p := browser.URLPolicy{LookupNetIP: lookup}
	var blocked *browser.BlockedURLError
	if err := p.Check(context.Background(), "http://demo-site:8765/"); !errors.As(err, &blocked) {
		t.Errorf("Check(demo-site -> loopback) = %v, want blocked", err)
	}
	p.AllowHosts = []string{"demo-site:8765"}
	if err := p.Check(context.Background(), "http://demo-site:8765/"); err != nil {
		t.Errorf("Check(allowed demo-site) = %v", err)
	}
}
