package browser

import (
	"strings"
	"testing"
)

func TestCapRunesAndLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		max      int
		runes    string
		runesCut bool
		lines    string
	}{
		{"short", 10, "short", false, "short"},
		{"exactly10!", 10, "exactly10!", false, "exactly10!"},
		{"héllo wörld", 5, "héllo", true, "héllo"},
		{"- a: 1\n- b: 2\n- c: 3", 10, "- a: 1\n- b", true, "- a: 1"},
		{"日本語のテキスト", 3, "日本語", true, "日本語"},
	}
	for _, tc := range tests {
		got, cut := capRunes(tc.in, tc.max)
		if got != tc.runes || cut != tc.runesCut {
			t.Errorf("capRunes(%q, %d) = %q, %v; want %q, %v", tc.in, tc.max, got, cut, tc.runes, tc.runesCut)
		}
		if got, _ := capLines(tc.in, tc.max); got != tc.lines {
			t.Errorf("capLines(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.lines)
		}
	}
}

func TestObservationString(t *testing.T) {
	t.Parallel()
	o := Observation{URL: "http://x/", Title: "T", Status: 404, Text: "body text", TextTruncated: true,
		AriaSnapshot: "- heading \"T\"", SnapshotTruncated: true}
	got := o.String()
	for _, want := range []string{"URL: http://x/\n", "Title: T\n", "Status: 404\n", "body text [...]", "Accessibility snapshot:\n- heading \"T\"\n[...]"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() lacks %q:\n%s", want, got)
		}
	}
}
