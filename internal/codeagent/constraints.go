package codeagent

import (
	"strings"
)

// Constraints are the constraints a code or reasoning task may carry.
type Constraints struct {
	// Code is a scripted program: the task brings its solution and the
	// platform records its execution (replay mode).
	Code string `json:"code"`
	// Tests is Python run after the program in the same interpreter (as
	// HumanEval checks are): the task is verified when it exits 0.
	Tests string `json:"tests"`
	// ExpectedOutput is compared with the program's stdout after trimming
	// trailing whitespace of each line and trailing blank lines.
	ExpectedOutput *string `json:"expected_output"`
	// Stdin is given to the program on standard input.
	Stdin string `json:"stdin"`
}

// hasVerifier reports whether the task says what a right result is.
func (c Constraints) hasVerifier() bool { return c.Tests != "" || c.ExpectedOutput != nil }

// normalizeOutput trims trailing whitespace per line and trailing blank lines.
func normalizeOutput(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}
