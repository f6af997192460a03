package main

import (
	"errors"
	"testing"

	"github.com/agentdataplatform/adp/internal/envconfig"
)

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		addr, want string // want: the loaded address, or "" for an error
	}{
		{"", ":8765"},
		{"127.0.0.1:9000", "127.0.0.1:9000"},
		{"garbage", ""},
		{"localhost:http", ""},
	} {
		var cfg config
		err := envconfig.Load(&cfg, map[string]string{"DEMO_ADDR": c.addr})
		var e *envconfig.Error
		switch {
		case c.want == "" && (!errors.As(err, &e) || e.Var != "DEMO_ADDR" || e.Value != c.addr):
			t.Errorf("DEMO_ADDR=%q: %v, want an error naming it", c.addr, err)
		case c.want != "" && (err != nil || cfg.Addr != c.want):
			t.Errorf("DEMO_ADDR=%q: %q, %v; want %q", c.addr, cfg.Addr, err, c.want)
		}
	}
}
