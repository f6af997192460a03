package sandbox

import (
	"strings"
	"testing"
)

func TestParsePBText(t *testing.T) {
	src := `# comment
name: "a \"quoted\" # not a comment"
mode: ONCE   # trailing comment
time_limit: 30
envar: "A=1"
envar: 'B=2'
description: "two " "parts"
uidmap { inside_id: "65534" outside_id: "65534" count: 1 }
mount: {
  dst: "/tmp"
  options: "size=1024";
  nested < deep: true >
}
mount { dst: "/usr", rw: false }
time_limit: 40
`
	m, err := parsePBText(src)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Scalar("name"); v != `a "quoted" # not a comment` {
		t.Errorf("name = %q", v)
	}
	if v, _ := m.Scalar("mode"); v != "ONCE" {
		t.Errorf("mode = %q", v)
	}
	if v, _ := m.Scalar("time_limit"); v != "40" {
		t.Errorf("time_limit = %q, want the last value", v)
	}
	if v, _ := m.Scalar("description"); v != "two parts" {
		t.Errorf("description = %q", v)
	}
	if got := m.All("envar"); len(got) != 2 || got[0].Value != "A=1" || got[1].Value != "B=2" {
		t.Errorf("envar = %+v", got)
	}
	mounts := m.Messages("mount")
	if len(mounts) != 2 {
		t.Fatalf("mounts = %d", len(mounts))
	}
	if v, _ := mounts[0].Scalar("options"); v != "size=1024" {
		t.Errorf("options = %q", v)
	}
	if n := mounts[0].Messages("nested"); len(n) != 1 {
		t.Errorf("nested = %v", n)
	} else if v, _ := n[0].Scalar("deep"); v != "true" {
		t.Errorf("deep = %q", v)
	}
	if tmpfsSize(mounts[0]) != 1024 {
		t.Errorf("tmpfsSize = %d", tmpfsSize(mounts[0]))
	}
	if _, ok := m.Scalar("missing"); ok {
		t.Error("missing field found")
	}
}

func TestParsePBTextErrors(t *testing.T) {
	for _, src := range []string{
		`mode ONCE`,             // no colon
		`name: "unterminated`,   // string
		`mount { dst: "/tmp" `,  // unclosed message
		`: 1`,                   // no name
		"name: \"a\nb\"",        // newline in string
		`name: `,                // no value
		`mount { dst: "/x" ] }`, // stray bracket
	} {
		if _, err := parsePBText(src); err == nil {
			t.Errorf("parsePBText(%q) succeeded", src)
		}
	}
}

// TestPBQuote: any program, as bytes, survives the trip into nsjail's
// configuration.
func TestPBQuote(t *testing.T) {
	for _, s := range []string{
		"", `print("hello")`, "a\\b\"c'd\n\t\r\x00\x7f\xff", "héllo ✓ 🐍", "\xc3\x28 invalid UTF-8",
		"#!/x\nmount { dst: \"/etc\" }\n", strings.Repeat("x\"\\\n", 1000),
	} {
		m, err := parsePBText("src_content: " + pbQuote(s) + "\n")
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got, _ := m.Scalar("src_content"); got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
		if strings.ContainsAny(pbQuote(s), "\n\x00") {
			t.Errorf("pbQuote(%q) contains a raw newline or NUL", s)
		}
	}
}
