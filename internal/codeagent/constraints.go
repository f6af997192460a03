package codeagent

import (
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
)

// Constraints are the constraints a code or reasoning task may carry; the
// one definition is core's.
type Constraints = core.CodeConstraints

// normalizeOutput trims trailing whitespace per line and trailing blank lines.
func normalizeOutput(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}
