package envconfig

import (
	"errors"
	"testing"
	"time"
)

type nested struct {
	Level string `env:"LEVEL" envDefault:"info" valid:"oneof=debug info"`
}

type testConfig struct {
	TTL      time.Duration     `env:"TTL" envDefault:"30s" valid:">0"`
	Workers  int               `env:"WORKERS" valid:">=1"` // unset: derived
	Batch    int               `env:"BATCH" envDefault:"8" valid:"1..16"`
	Grace    time.Duration     `env:"GRACE" envDefault:"0s" valid:">=0"`
	Addr     string            `env:"ADDR" envDefault:":80" valid:"hostport"`
	Redis    string            `env:"REDIS" envDefault:"redis://localhost:6379" valid:"redisurl"`
	API      string            `env:"API" valid:"httpurl"`
	Ratio    float64           `env:"RATIO" envDefault:"0.5"`
	Aliases  map[string]string `env:"ALIASES" envSeparator:"," envKeyValSeparator:"="`
	Flag     bool              `env:"FLAG"`
	Nested   nested
	checkErr error
}

func (c *testConfig) Check() error { return c.checkErr }

func TestLoad(t *testing.T) {
	cases := []struct {
		env     map[string]string
		wantVar string // "" means accepted
	}{
		{map[string]string{}, ""},
		{map[string]string{"WORKERS": "", "API": "https://example.test/v1", "ALIASES": "a=1.2.3.4", "FLAG": "true"}, ""},
		{map[string]string{"TTL": "-5s"}, "TTL"},
		{map[string]string{"TTL": "0s"}, "TTL"},
		{map[string]string{"TTL": "5"}, "TTL"},
		{map[string]string{"WORKERS": "0"}, "WORKERS"},
		{map[string]string{"BATCH": "17"}, "BATCH"},
		{map[string]string{"BATCH": "0"}, "BATCH"},
		{map[string]string{"GRACE": "-1ns"}, "GRACE"},
		{map[string]string{"ADDR": "garbage"}, "ADDR"},
		{map[string]string{"ADDR": "127.0.0.1:70000"}, "ADDR"},
		{map[string]string{"REDIS": "http://x"}, "REDIS"},
		{map[string]string{"API": "localhost:8000"}, "API"},
		{map[string]string{"RATIO": "half"}, "RATIO"},
		{map[string]string{"ALIASES": "a"}, "ALIASES"},
		{map[string]string{"FLAG": "yes"}, "FLAG"},
		{map[string]string{"LEVEL": "verbose"}, "LEVEL"},
	}
	for _, c := range cases {
		var cfg testConfig
		err := Load(&cfg, c.env)
		var e *Error
		switch {
		case c.wantVar == "" && err != nil:
			t.Errorf("%v: %v", c.env, err)
		case c.wantVar != "" && (!errors.As(err, &e) || e.Var != c.wantVar || e.Want == ""):
			t.Errorf("%v: err = %v, want an *Error for %s", c.env, err, c.wantVar)
		}
	}
	var cfg testConfig
	if err := Load(&cfg, map[string]string{}); err != nil || cfg.TTL != 30*time.Second || cfg.Nested.Level != "info" {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}

// Check runs after the tags' checks and its error is returned as it is.
func TestLoadRunsCheck(t *testing.T) {
	want := &Error{Var: "X", Value: "1", Want: "2"}
	cfg := testConfig{checkErr: want}
	if err := Load(&cfg, map[string]string{}); err != want {
		t.Errorf("Load = %v, want the Check error", err)
	}
	if err := Load(&cfg, map[string]string{"TTL": "-1s"}); err == want {
		t.Error("Check ran before the tags' checks")
	}
}

func TestDefault(t *testing.T) {
	type Inner struct {
		Addr string `env:"ADDR" envDefault:":80"`
	}
	type outer struct {
		Inner
		Level string `env:"LEVEL" envDefault:"info"`
		Bare  string `env:"BARE"`
	}
	if got := Default(&outer{}, "LEVEL"); got != "info" {
		t.Errorf("LEVEL default %q", got)
	}
	if got := Default(&outer{}, "ADDR"); got != ":80" {
		t.Errorf("embedded ADDR default %q", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("a variable without a default did not panic")
		}
	}()
	Default(&outer{}, "BARE")
}
