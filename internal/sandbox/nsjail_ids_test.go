package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestHostIDNames(t *testing.T) {
	const group = "root:x:0:\nnogroup:x:65534:\n"
	cases := []struct {
		name, passwd string
		want         idNames
		ok           bool
	}{
		{"debian", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", idNames{"nobody", "nogroup"}, true},
		{"comments and blank lines", "# users\n\nnobody:x:65534:65534::/:/bin/false\n", idNames{"nobody", "nogroup"}, true},
		{"no entry of the id", "root:x:0:0:root:/root:/bin/bash\n", idNames{}, false},
		{"the name's first entry has another id", "nobody:x:99:99::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\n", idNames{}, false},
		{"NIS compat entries", "root:x:0:0:root:/root:/bin/bash\n+::::::\nnobody:x:65534:65534::/:/bin/false\n", idNames{}, false},
		{"a numeric name", "4242:x:65534:65534::/:/bin/false\n", idNames{}, false},
		{"a name nsjail's text could not carry", "no\"body:x:65534:65534::/:/bin/false\n", idNames{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pw, gr := filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
			if err := os.WriteFile(pw, []byte(tc.passwd), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(gr, []byte(group), 0o644); err != nil {
				t.Fatal(err)
			}
			got, ok := hostIDNames(pw, gr, jailUID)
			if ok != tc.ok || got != tc.want {
				t.Errorf("hostIDNames = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if _, ok := hostIDNames(filepath.Join(t.TempDir(), "none"), "/etc/group", jailUID); ok {
		t.Error("names from a missing passwd file")
	}
}

// TestWithIDNames: the shipped policy's maps are rewritten to names, and
// the rewritten policy still passes the check (which reads ids as numbers
// only for the original file) and maps nothing else.
func TestWithIDNames(t *testing.T) {
	path, err := FindNsjailConfig("")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := loadNsjailPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	names := idNames{"nobody", "nogroup"}
	pol.useIDNames(names, true)
	if pol.user != "nobody" || pol.group != "nogroup" {
		t.Fatalf("user, group = %q, %q", pol.user, pol.group)
	}
	m, err := parsePBText(pol.text)
	if err != nil {
		t.Fatal(err)
	}
	for block, name := range map[string]string{"uidmap": "nobody", "gidmap": "nogroup"} {
		ms := m.Messages(block)
		if len(ms) != 1 {
			t.Fatalf("%d %s blocks", len(ms), block)
		}
		in, _ := ms[0].Scalar("inside_id")
		out, _ := ms[0].Scalar("outside_id")
		if in != name || out != name {
			t.Errorf("%s maps %q to %q, want %q", block, in, out, name)
		}
	}
	if strings.Count(pol.text, `"nobody"`) != 2 || strings.Count(pol.text, `"nogroup"`) != 2 {
		t.Errorf("names written elsewhere than the maps:\n%s", pol.text)
	}
	// A policy whose maps cannot be told apart is left as it is.
	odd := "uidmap { inside_id: \"65534\" outside_id: \"65534\" }\nuidmap { inside_id: \"1\" outside_id: \"1\" }\ngidmap { inside_id: \"65534\" outside_id: \"65534\" }\n"
	if _, ok := withIDNames(odd, jailUID, names); ok {
		t.Error("rewrote a policy with two uid maps")
	}
	// Without maps in the file, the command line carries the names.
	bare := nsjailPolicy{path: "p.cfg"}
	bare.useIDNames(names, true)
	argv := nsjailArgs("nsjail", bare, cgroupSupport{}, DefaultLimits(), mustSpec(t, Request{}, interpreter{path: DefaultPythonPath}), "x", true)
	if got := flagValues(argv, "--user"); !slices.Equal(got, []string{"nobody:nobody"}) {
		t.Errorf("--user = %q, want nobody:nobody", got)
	}
	if got := flagValues(argv, "--group"); !slices.Equal(got, []string{"nogroup:nogroup"}) {
		t.Errorf("--group = %q, want nogroup:nogroup", got)
	}
}
