package testsupport

import (
	"strconv"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/envconfig"
)

// CheckEnvDefaults checks that the envDefault tags of cfg's variables
// (a pointer to a config struct) are the defaults a library applies to a
// zero value: want maps a variable to the library's constant (a
// time.Duration, an int, an int64 or a string). The tags are what the
// binaries read; the constants are what a Go caller gets; both must say
// the same.
func CheckEnvDefaults(t testing.TB, cfg any, want map[string]any) {
	t.Helper()
	for key, w := range want {
		tag := envconfig.Default(cfg, key)
		var ok bool
		switch w := w.(type) {
		case time.Duration:
			d, err := time.ParseDuration(tag)
			ok = err == nil && d == w
		case int:
			n, err := strconv.Atoi(tag)
			ok = err == nil && n == w
		case int64:
			n, err := strconv.ParseInt(tag, 10, 64)
			ok = err == nil && n == w
		case string:
			ok = tag == w
		default:
			t.Fatalf("%s: a %T cannot be compared with a tag", key, w)
		}
		if !ok {
			t.Errorf("%s defaults to %q in the environment but to %v in the library", key, tag, w)
		}
	}
}
