package main

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

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

// TestCheckDownloadsAndVision: WEB_MAX_DOWNLOAD_MB is bounded, 0 refuses
// downloads, and WEB_VISION needs the chat API.
func TestCheckDownloadsAndVision(t *testing.T) {
	ok := func() config {
		c := config{SettleTimeout: time.Second, QuietWindow: 100 * time.Millisecond, RecycleAfter: 1, MaxTextChars: 1, MaxSnapshotChars: 1, MaxDownloadMB: 10}
		c.LLM.API = "chat"
		return c
	}
	for _, tc := range []struct {
		name string
		edit func(*config)
		bad  string
	}{
		{"defaults", func(*config) {}, ""},
		{"downloads off", func(c *config) { c.MaxDownloadMB = 0 }, ""},
		{"downloads at the bound", func(c *config) { c.MaxDownloadMB = 1024 }, ""},
		{"downloads over the bound", func(c *config) { c.MaxDownloadMB = 1025 }, "WEB_MAX_DOWNLOAD_MB"},
		{"vision with chat", func(c *config) { c.Vision = true }, ""},
		{"vision with completions", func(c *config) { c.Vision, c.LLM.API = true, "completions" }, "WEB_VISION"},
	} {
		c := ok()
		tc.edit(&c)
		err := c.Check()
		if (err == nil) != (tc.bad == "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: Check() = %v, want an error naming %q", tc.name, err, tc.bad)
		}
	}
	if downloadBytes(0) != -1 || downloadBytes(10) != 10<<20 {
		t.Errorf("downloadBytes: 0 -> %d, 10 -> %d", downloadBytes(0), downloadBytes(10))
	}
}
