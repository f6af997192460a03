package redisconn

import (
	"strings"
	"testing"
)

func TestRedactAndErrors(t *testing.T) {
	for _, u := range []string{"redis://:s3cret@host:6379/0", "rediss://user:s3cret@host:6380"} {
		if r := Redact(u); strings.Contains(r, "s3cret") {
			t.Errorf("Redact(%q) = %q leaks the password", u, r)
		}
	}
	_, err := Open("http://:s3cret@host:6379", Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open of a bad URL: %v (must fail without the password)", err)
	}
	_, err = Open("rediss://host:6380", Options{CAFile: "/nonexistent/ca.pem"})
	if err == nil || !strings.Contains(err.Error(), "REDIS_CA_FILE") {
		t.Errorf("missing CA file: %v", err)
	}
	c, err := Open("rediss://:pw@host:6380/2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if o := c.Options(); o.TLSConfig == nil || o.Password != "pw" || o.DB != 2 {
		t.Errorf("options = TLS %v password %q db %d", o.TLSConfig != nil, o.Password, o.DB)
	}
}
