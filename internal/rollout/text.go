package rollout

import (
	"encoding/json"
	"regexp"

	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// pythonFenceRE matches a fenced code block tagged python (py, python3) or
// untagged.
var pythonFenceRE = regexp.MustCompile("(?s)```(?:python3?|py)?[ \t]*\r?\n(.*?)```")

// TextCalls parses the tool calls of a text-mode reply (prompt.TextTools
// tells the model the forms): a JSON object {"tool": name, "arguments":
// {...}} naming one of tools (and the other shapes llm.ExtractToolCalls
// accepts) is that call; otherwise, when run_python is one of tools, the
// first fenced Python block is a run_python call of its code. A reply with
// neither is an answer.
func TextCalls(content string, tools []llm.Tool) []llm.ToolCall {
	if calls := llm.ExtractToolCalls(content, tools); len(calls) > 0 {
		return calls
	}
	if _, ok := prompt.Find(prompt.ToolRunPython, tools); !ok {
		return nil
	}
	m := pythonFenceRE.FindStringSubmatch(content)
	if m == nil {
		return nil
	}
	args, _ := json.Marshal(map[string]string{"code": m[1]}) // a string always encodes
	return []llm.ToolCall{{ID: textCallID, Type: "function", Function: llm.FunctionCall{Name: prompt.ToolRunPython, Arguments: string(args)}}}
}

// textCallID names a call parsed from a fenced block; text mode sends no
// ids back, so it is only seen by the tools.
const textCallID = "text_call"
