package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// maxQuotedArgumentBytes is how much of bad arguments an error quotes back.
const maxQuotedArgumentBytes = 200

// ToolCallError says why a tool call cannot be executed, worded for the
// model: an agent loop sends Error() back as the tool result (ToolResult)
// so the model can correct itself, and counts it as a failed step.
type ToolCallError struct {
	ID     string // the call's id
	Tool   string // the function name as the model wrote it
	Reason string
	Err    error // the underlying decode error, if any
}

func (e *ToolCallError) Error() string {
	if e.Tool == "" {
		return "invalid tool call: " + e.Reason
	}
	return fmt.Sprintf("invalid call of tool %q: %s", e.Tool, e.Reason)
}

func (e *ToolCallError) Unwrap() error { return e.Err }

// ValidateToolCall checks that tc names one of tools. The error lists the
// available tools.
func ValidateToolCall(tc ToolCall, tools []Tool) error {
	names := make([]string, 0, len(tools))
	for _, t := range tools {
		if t.Function.Name == tc.Function.Name && tc.Function.Name != "" {
			return nil
		}
		names = append(names, t.Function.Name)
	}
	reason := fmt.Sprintf("unknown tool; available tools: %s", strings.Join(names, ", "))
	if tc.Function.Name == "" {
		reason = fmt.Sprintf("no function name given; available tools: %s", strings.Join(names, ", "))
	}
	return &ToolCallError{ID: tc.ID, Tool: tc.Function.Name, Reason: reason}
}

// ParseArguments decodes tc's arguments into v (usually a pointer to a
// struct). It is lenient where models commonly slip: empty arguments mean {},
// a ```json fence is removed, and arguments encoded twice (a JSON string
// holding the object) are decoded once more. Anything else that is not valid
// JSON, or does not fit v, gives a *ToolCallError quoting the start of the
// arguments.
func ParseArguments(tc ToolCall, v any) error {
	args := []byte(stripFence(strings.TrimSpace(tc.Function.Arguments)))
	if len(args) == 0 {
		args = []byte("{}")
	}
	fail := func(reason string, err error) error {
		return &ToolCallError{ID: tc.ID, Tool: tc.Function.Name, Reason: reason, Err: err}
	}
	if !json.Valid(args) {
		err := json.Unmarshal(args, new(any))
		return fail(fmt.Sprintf("arguments are not valid JSON (%v); got %s; send the arguments as one JSON object matching the tool's parameters",
			err, quote(args)), err)
	}
	if args[0] == '"' {
		var inner string
		if err := json.Unmarshal(args, &inner); err == nil {
			if in := bytes.TrimSpace([]byte(inner)); len(in) > 0 && in[0] == '{' && json.Valid(in) {
				args = in
			}
		}
	}
	if err := json.Unmarshal(args, v); err != nil {
		var te *json.UnmarshalTypeError
		reason := fmt.Sprintf("arguments do not match the tool's parameters (%v); got %s", err, quote(args))
		if errors.As(err, &te) && te.Field != "" {
			reason = fmt.Sprintf("argument %q must be %s, not %s; got %s", te.Field, te.Type, te.Value, quote(args))
		}
		return fail(reason, err)
	}
	return nil
}

func quote(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > maxQuotedArgumentBytes {
		cut := maxQuotedArgumentBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return fmt.Sprintf("%q", s)
}

var fenceRE = regexp.MustCompile("(?s)^```[a-zA-Z]*\\s*\n?(.*?)\\s*```$")

func stripFence(s string) string {
	if m := fenceRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return s
}

var (
	toolCallTagRE = regexp.MustCompile(`(?s)<tool_call>\s*(.*?)\s*</tool_call>`)
	fencedRE      = regexp.MustCompile("(?s)```[a-zA-Z]*\\s*\n(.*?)```")
)

// ExtractToolCalls recovers tool calls that a model wrote in its content
// instead of in tool_calls. It looks, in order, at <tool_call>…</tool_call>
// blocks (Hermes/Qwen style), ```fenced``` blocks, the whole content, and
// the first JSON object in the text. Accepted shapes, alone or in a list or
// under "tool_calls":
//
//	{"name": "run_python", "arguments": {...}}   // also "parameters", "args", "input"
//	{"tool": "run_python", ...}
//	{"type": "function", "function": {"name": ..., "arguments": ...}}
//
// Only calls naming one of tools are returned, so a JSON final answer is not
// mistaken for a call. The ids are generated; arguments keep the model's
// text when it gave a string.
func ExtractToolCalls(content string, tools []Tool) []ToolCall {
	known := make(map[string]bool, len(tools))
	for _, t := range tools {
		known[t.Function.Name] = true
	}
	var candidates []string
	for _, m := range toolCallTagRE.FindAllStringSubmatch(content, -1) {
		candidates = append(candidates, m[1])
	}
	if calls := callsFrom(candidates, known); len(calls) > 0 {
		return calls
	}
	candidates = candidates[:0]
	for _, m := range fencedRE.FindAllStringSubmatch(content, -1) {
		candidates = append(candidates, m[1])
	}
	candidates = append(candidates, content)
	if i := strings.IndexByte(content, '{'); i >= 0 {
		dec := json.NewDecoder(strings.NewReader(content[i:]))
		var raw json.RawMessage
		if dec.Decode(&raw) == nil {
			candidates = append(candidates, string(raw))
		}
	}
	return callsFrom(candidates, known)
}

func callsFrom(candidates []string, known map[string]bool) []ToolCall {
	for _, c := range candidates {
		c = strings.TrimSpace(c)
		if c == "" || (c[0] != '{' && c[0] != '[') {
			continue
		}
		var v any
		if json.Unmarshal([]byte(c), &v) != nil {
			continue
		}
		var calls []ToolCall
		collectCalls(v, known, &calls)
		if len(calls) > 0 {
			return calls
		}
	}
	return nil
}

func collectCalls(v any, known map[string]bool, out *[]ToolCall) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			collectCalls(e, known, out)
		}
	case map[string]any:
		if tc, ok := v["tool_calls"]; ok {
			collectCalls(tc, known, out)
			return
		}
		if fn, ok := v["function"].(map[string]any); ok {
			v = fn
		}
		name, _ := v["name"].(string)
		if name == "" {
			name, _ = v["tool"].(string)
		}
		if name == "" {
			name, _ = v["function"].(string)
		}
		if !known[name] {
			return
		}
		args := "{}"
		for _, k := range []string{"arguments", "parameters", "args", "input"} {
			a, ok := v[k]
			if !ok {
				continue
			}
			if s, ok := a.(string); ok {
				args = s
			} else if b, err := json.Marshal(a); err == nil {
				args = string(b)
			}
			break
		}
		*out = append(*out, ToolCall{ID: newCallID(), Type: "function", Function: FunctionCall{Name: name, Arguments: args}})
	}
}
