package workspace

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestCutMiddle(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		keep     int
		want     string
		cut      bool
	}{
		{"fits", "hello", 10, "hello", false},
		{"cut", "0123456789", 4, "01" + marker(6) + "89", true},
		{"odd keep", "0123456789", 5, "012" + marker(5) + "89", true},
		{"rune boundary", "ééééé", 5, "é" + marker(6) + "é", true},
		{"recut the jail's marker", "abcd" + marker(100) + "wxyz", 4, "ab" + marker(104) + "yz", true},
		{"jail's marker fits", "ab" + marker(100) + "yz", 4, "ab" + marker(100) + "yz", true},
		{"short head", "a" + marker(10) + "uvwxyz", 4, "a" + marker(13) + "xyz", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := cutMiddle(tc.in, tc.keep)
			if got != tc.want || cut != tc.cut {
				t.Errorf("cutMiddle(%q, %d) = %q, %v; want %q, %v", tc.in, tc.keep, got, cut, tc.want, tc.cut)
			}
			if !utf8.ValidString(got) {
				t.Errorf("invalid UTF-8: %q", got)
			}
		})
	}
}

func TestFitOutput(t *testing.T) {
	long := strings.Repeat("o", 100)
	for _, tc := range []struct {
		name             string
		out, err         string
		budget           int
		wantOut, wantErr int // kept bytes of each, markers excluded
	}{
		{"both fit", "abc", "de", 10, 3, 2},
		{"small stderr keeps all", long, "err", 20, 17, 3},
		{"small stdout keeps all", "out", long, 20, 3, 17},
		{"both long", long, long, 20, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, e, cut := fitOutput(tc.out, tc.err, tc.budget, false)
			kept := func(s string) int { return len(cutMarker.ReplaceAllString(s, "")) }
			if kept(o) != tc.wantOut || kept(e) != tc.wantErr {
				t.Errorf("kept %d and %d bytes, want %d and %d (%q %q)", kept(o), kept(e), tc.wantOut, tc.wantErr, o, e)
			}
			if cut != (len(tc.out)+len(tc.err) > tc.budget) {
				t.Errorf("truncated = %v", cut)
			}
		})
	}
}

func TestObservationString(t *testing.T) {
	for _, tc := range []struct {
		name string
		obs  Observation
		want string
	}{
		{"quiet", Observation{Cwd: "/workspace", Duration: 50 * time.Millisecond}, "[exit code 0 | cwd /workspace | 0.05 s]\n(no output)\n"},
		{"all", Observation{ExitCode: 137, Cwd: "/workspace/src", Duration: 2 * time.Second, Stdout: "out", Stderr: "err\n",
			TimedOut: true, Note: "the command timed out"},
			"[exit code 137 | cwd /workspace/src | 2.00 s | timed out]\nstdout:\nout\nstderr:\nerr\nnote: the command timed out\n"},
		{"cap", Observation{ExitCode: 1, Cwd: "/workspace", ErrorType: core.ErrOutputLimit, Note: "cap"},
			"[exit code 1 | cwd /workspace | 0.00 s | output_limit]\nnote: cap\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.obs.String(); got != tc.want {
				t.Errorf("String() =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// TestStepOutputBounded: a step's output is cut in the middle to the
// manager's bound, both ends kept.
func TestStepOutputBounded(t *testing.T) {
	forEachBackend(t, Config{ObservationBytes: 1000}, func(t *testing.T, s setup) {
		w := s.open(t, Seed{})
		obs := bash(t, w, "echo START; seq 1 100000; echo END; echo ERRSTART >&2; seq 1 50000 >&2; echo ERREND >&2")
		if !obs.Truncated || !strings.Contains(obs.Note, "cut") {
			t.Errorf("not marked truncated: %+v", obs.Note)
		}
		for _, want := range []string{"START\n", "END\n"} {
			if !strings.Contains(obs.Stdout, want) {
				t.Errorf("stdout lost %q", want)
			}
		}
		for _, want := range []string{"ERRSTART\n", "ERREND\n"} {
			if !strings.Contains(obs.Stderr, want) {
				t.Errorf("stderr lost %q", want)
			}
		}
		if n := len(cutMarker.ReplaceAllString(obs.Stdout+obs.Stderr, "")); n > 1000 {
			t.Errorf("kept %d bytes, over the bound of 1000", n)
		}
	})
}
