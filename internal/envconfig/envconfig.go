// Package envconfig reads a binary's configuration from environment
// variables and checks every variable against its documented range before
// the binary does anything else.
//
// A config struct declares each variable once, in its field's tags:
//
//	LeaseTTL time.Duration `env:"LEASE_TTL" envDefault:"30s" valid:">0"`
//
// env and envDefault are caarlos0/env's; valid is the accepted range (see
// rule). A variable is checked when it is set or has a default; an unset
// variable without a default keeps its zero value, which the binary reads
// as "derive it" (SANDBOX_CONCURRENCY: the number of CPUs). Checks that
// involve several variables, or bounds defined by another package, are a
// method Check() error on the struct, called after the tags' checks.
//
// Every failure is an *Error that names the variable, its value and what
// is accepted, never a Go field or type.
package envconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"
)

// Error is a variable whose value is not accepted.
type Error struct {
	Var   string // the environment variable
	Value string // its value as given (or as loaded, for a default)
	Want  string // what is accepted, in words
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s=%s is not accepted: want %s", e.Var, strconv.Quote(e.Value), e.Want)
}

// Checker is a config struct with checks beyond its fields' valid tags.
type Checker interface{ Check() error }

// Load fills cfg (a pointer to a config struct) from environ, or the
// process environment when environ is nil, and checks it: first that every
// set variable parses as its type, then each valid tag, then the Check
// methods of the struct and of the structs it holds.
func Load(cfg any, environ map[string]string) error {
	if environ == nil {
		environ = env.ToMap(os.Environ())
	}
	fields := walk(reflect.ValueOf(cfg).Elem())
	for _, f := range fields {
		if raw := environ[f.key]; raw != "" {
			if err := parses(f, raw); err != nil {
				return err
			}
		}
	}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: environ}); err != nil {
		return fmt.Errorf("environment: %w", err) // not reached: parses saw every value
	}
	for _, f := range fields {
		raw := environ[f.key]
		if f.rule == "" || (raw == "" && !f.hasDefault) {
			continue
		}
		if raw == "" {
			raw = f.def
		}
		if want := check(f.rule, f.v, f.def); want != "" {
			return &Error{Var: f.key, Value: raw, Want: want}
		}
	}
	return runChecks(reflect.ValueOf(cfg))
}

// Default returns the default (envDefault tag) of variable key in cfg, a
// pointer to a config struct: the one place a default is written, for
// programs that must name it without loading the variable (a usage text,
// a library's zero value). It panics when cfg declares no default for key:
// a programming error.
func Default(cfg any, key string) string {
	for _, f := range walk(reflect.ValueOf(cfg).Elem()) {
		if f.key == key && f.hasDefault {
			return f.def
		}
	}
	panic(fmt.Sprintf("envconfig: %T declares no default for %s", cfg, key))
}

// field is one variable of a config struct.
type field struct {
	key, def, rule string
	hasDefault     bool
	v              reflect.Value
	t              reflect.StructField
}

// walk lists the variables of struct value v, in declaration order, with
// those of nested structs (embedded or not) in place.
func walk(v reflect.Value) []field {
	var out []field
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		key := sf.Tag.Get("env")
		if key == "" {
			if sf.Type.Kind() == reflect.Struct {
				out = append(out, walk(v.Field(i))...)
			}
			continue
		}
		key, _, _ = strings.Cut(key, ",")
		def, hasDef := sf.Tag.Lookup("envDefault")
		out = append(out, field{key: key, def: def, hasDefault: hasDef, rule: sf.Tag.Get("valid"), v: v.Field(i), t: sf})
	}
	return out
}

// runChecks calls the Check methods of v's nested structs, then v's own.
func runChecks(v reflect.Value) error {
	s := v.Elem()
	for i := range s.NumField() {
		sf := s.Type().Field(i)
		if sf.IsExported() && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("env") == "" {
			if err := runChecks(s.Field(i).Addr()); err != nil {
				return err
			}
		}
	}
	if c, ok := v.Interface().(Checker); ok {
		return c.Check()
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// parses reports raw as an *Error when it is not a value of f's type.
func parses(f field, raw string) error {
	t := f.t.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var err error
	want := ""
	switch {
	case t == durationType:
		_, err = time.ParseDuration(raw)
		want = "a duration such as 30s, 500ms or 2m"
	case t.Kind() == reflect.Bool:
		_, err = strconv.ParseBool(raw)
		want = "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		_, err = strconv.ParseInt(raw, 10, t.Bits())
		want = "a whole number"
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32:
		_, err = strconv.ParseFloat(raw, t.Bits())
		want = "a number"
	case t.Kind() == reflect.Map:
		sep := f.t.Tag.Get("envSeparator")
		kv := f.t.Tag.Get("envKeyValSeparator")
		for _, pair := range strings.Split(raw, sep) {
			if !strings.Contains(pair, kv) {
				err = errors.New("no separator")
			}
		}
		want = fmt.Sprintf("name%svalue pairs separated by %q", kv, sep)
	}
	if err != nil {
		return &Error{Var: f.key, Value: raw, Want: want}
	}
	return nil
}

// check returns what rule accepts when v (loaded from the variable) breaks
// it, and "" when v is accepted. Rules:
//
//	>0, >=0, >=1    a number or duration above or at the bound
//	A..B            a whole number from A to B
//	oneof=a b c     one of the words
//	hostport        host:port with a numeric port (the host may be empty)
//	redisurl        a redis:// or rediss:// URL
//	httpurl         an http:// or https:// URL with a host
//	nonempty        anything but blanks
func check(rule string, v reflect.Value, def string) string {
	example := ""
	if def != "" {
		example = ", such as " + def
	}
	num := func() (float64, bool) {
		switch {
		case v.Kind() >= reflect.Int && v.Kind() <= reflect.Int64:
			return float64(v.Int()), true
		case v.Kind() == reflect.Float64:
			return v.Float(), true
		}
		return 0, false
	}
	what := "a whole number"
	if v.Type() == durationType {
		what = "a duration"
	} else if v.Kind() == reflect.Float64 {
		what = "a number"
	}
	switch {
	case rule == ">0":
		if n, _ := num(); n <= 0 {
			return what + " greater than 0" + example
		}
	case strings.HasPrefix(rule, ">="):
		bound, err := strconv.ParseFloat(strings.TrimPrefix(rule, ">="), 64)
		if err != nil {
			panic("envconfig: bad rule " + rule)
		}
		if n, _ := num(); n < bound {
			return fmt.Sprintf("%s of at least %s%s", what, strings.TrimPrefix(rule, ">="), example)
		}
	case strings.Contains(rule, ".."):
		lo, hi, _ := strings.Cut(rule, "..")
		a, err1 := strconv.ParseFloat(lo, 64)
		b, err2 := strconv.ParseFloat(hi, 64)
		if err1 != nil || err2 != nil {
			panic("envconfig: bad rule " + rule)
		}
		if n, _ := num(); n < a || n > b {
			return fmt.Sprintf("%s from %s to %s%s", what, lo, hi, example)
		}
	case strings.HasPrefix(rule, "oneof="):
		words := strings.Fields(strings.TrimPrefix(rule, "oneof="))
		for _, w := range words {
			if v.String() == w {
				return ""
			}
		}
		return "one of " + strings.Join(words, ", ")
	case rule == "hostport":
		return HostPort(v.String())
	case rule == "redisurl":
		if _, err := redis.ParseURL(v.String()); err != nil {
			return "a redis://[:password@]host:port[/db] or rediss:// URL"
		}
	case rule == "httpurl":
		u, err := url.Parse(v.String())
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return "an http:// or https:// URL with a host and no credentials, such as http://localhost:8000/v1"
		}
	case rule == "nonempty":
		if strings.TrimSpace(v.String()) == "" {
			return "a non-empty value" + example
		}
	default:
		panic("envconfig: unknown rule " + rule)
	}
	return ""
}

// HostPort returns what a listen address accepts when addr is not one, and
// "" when it is: host:port (the host may be empty) with a port from 0 to
// 65535.
func HostPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return "host:port with a numeric port, such as :8000 or 127.0.0.1:8000"
	}
	return ""
}

// Range returns an *Error for variable name when n is outside lo..hi, for
// Check methods whose bounds are another package's constants.
func Range(name string, n, lo, hi int) error {
	if n < lo || n > hi {
		return &Error{Var: name, Value: strconv.Itoa(n), Want: fmt.Sprintf("a whole number from %d to %d", lo, hi)}
	}
	return nil
}
