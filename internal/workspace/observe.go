package workspace

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// String is the text the model sees: a header line with the exit code,
// the working directory and the duration, then stdout, stderr and the
// note, each labelled and present only when not empty. Stdout and stderr
// are already bounded (Manager's ObservationBytes, the middle cut).
//
//	[exit code 0 | cwd /workspace | 0.04 s]
//	stdout:
//	...
//	stderr:
//	...
//	note: ...
func (o Observation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[exit code %d | cwd %s | %.2f s", o.ExitCode, o.Cwd, o.Duration.Seconds())
	if o.TimedOut {
		b.WriteString(" | timed out")
	}
	if o.ErrorType != "" {
		fmt.Fprintf(&b, " | %s", o.ErrorType)
	}
	b.WriteString("]\n")
	section := func(label, text string) {
		if text == "" {
			return
		}
		b.WriteString(label)
		b.WriteString(":\n")
		b.WriteString(text)
		if !strings.HasSuffix(text, "\n") {
			b.WriteString("\n")
		}
	}
	section("stdout", o.Stdout)
	section("stderr", o.Stderr)
	if o.Note != "" {
		b.WriteString("note: ")
		b.WriteString(o.Note)
		b.WriteString("\n")
	}
	if o.Stdout == "" && o.Stderr == "" && o.Note == "" {
		b.WriteString("(no output)\n")
	}
	return b.String()
}

// cutMarker is the sandbox's marker where a stream's middle was dropped
// (internal/sandbox's streamBuffer writes it), and this package's.
var cutMarker = regexp.MustCompile(`\n\.\.\. \[(\d+) bytes omitted\] \.\.\.\n`)

func marker(omitted int64) string { return fmt.Sprintf("\n... [%d bytes omitted] ...\n", omitted) }

// cutMiddle bounds s to about keep bytes (plus the marker): its first and
// last halves, the middle replaced by the marker with the count of bytes
// dropped, those the jail dropped already included. Cuts fall on rune
// boundaries.
func cutMiddle(s string, keep int) (string, bool) {
	if loc := cutMarker.FindStringSubmatchIndex(s); loc != nil {
		omitted, _ := strconv.ParseInt(s[loc[2]:loc[3]], 10, 64)
		head, tail := s[:loc[0]], s[loc[1]:]
		if len(head)+len(tail) <= keep {
			return s, true
		}
		hk, tk := keep-keep/2, keep/2
		if len(head) < hk {
			hk, tk = len(head), keep-len(head)
		} else if len(tail) < tk {
			hk, tk = keep-len(tail), len(tail)
		}
		h, t := trimRuneEnd(head[:hk]), trimRuneStart(tail[len(tail)-tk:])
		return h + marker(omitted+int64(len(head)-len(h))+int64(len(tail)-len(t))) + t, true
	}
	if len(s) <= keep {
		return s, false
	}
	h, t := trimRuneEnd(s[:keep-keep/2]), trimRuneStart(s[len(s)-keep/2:])
	return h + marker(int64(len(s)-len(h)-len(t))) + t, true
}

func trimRuneEnd(s string) string {
	for i := 0; i < utf8.UTFMax && len(s) > 0; i++ {
		r, size := utf8.DecodeLastRuneInString(s)
		if r != utf8.RuneError || size > 1 {
			return s
		}
		s = s[:len(s)-1]
	}
	return s
}

func trimRuneStart(s string) string {
	for i := 0; i < utf8.UTFMax && len(s) > 0; i++ {
		r, size := utf8.DecodeRuneInString(s)
		if r != utf8.RuneError || size > 1 {
			return s
		}
		s = s[1:]
	}
	return s
}

// fitOutput bounds stdout and stderr together to budget bytes (plus the
// markers): a stream that fits in half keeps all of it and leaves the rest
// to the other.
func fitOutput(stdout, stderr string, budget int, truncated bool) (string, string, bool) {
	if len(stdout)+len(stderr) <= budget {
		return stdout, stderr, truncated
	}
	outKeep, errKeep := budget-budget/2, budget/2
	if len(stderr) < errKeep {
		outKeep = budget - len(stderr)
	} else if len(stdout) < outKeep {
		errKeep = budget - len(stdout)
	}
	o, ot := cutMiddle(stdout, outKeep)
	e, et := cutMiddle(stderr, errKeep)
	return o, e, truncated || ot || et
}
