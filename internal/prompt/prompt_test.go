package prompt

import (
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/llm"
)

// The text-mode tool description is made from the tool definitions native
// mode sends: every tool's name, description and schema, and the fenced
// block form only where run_python is offered.
func TestTextTools(t *testing.T) {
	for _, tc := range []struct {
		name  string
		defs  []llm.Tool
		fence bool
	}{
		{"code", []llm.Tool{RunPython}, true},
		{"web", WebTools, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TextTools(tc.defs)
			for _, d := range tc.defs {
				line := "- " + d.Function.Name + ": " + d.Function.Description + " Arguments (JSON schema): " + string(d.Function.Parameters)
				if !strings.Contains(got, line) {
					t.Errorf("description lacks %q:\n%s", line, got)
				}
			}
			if strings.Contains(got, "```python") != tc.fence {
				t.Errorf("fenced form mentioned: %v, want %v", !tc.fence, tc.fence)
			}
			if !strings.Contains(got, `{"tool": "<name>", "arguments": {<arguments>}}`) {
				t.Errorf("the JSON form is not described:\n%s", got)
			}
		})
	}
}
