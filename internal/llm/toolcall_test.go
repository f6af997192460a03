package llm

import (
	"errors"
	"strings"
	"testing"
)

func call(name, args string) ToolCall {
	return ToolCall{ID: "call_x", Type: "function", Function: FunctionCall{Name: name, Arguments: args}}
}

func TestParseArguments(t *testing.T) {
	t.Parallel()
	type params struct {
		Code    string `json:"code"`
		Timeout int    `json:"timeout"`
	}
	tests := []struct {
		name    string
		args    string
		want    params
		wantErr string // substring of the error; "" = no error
	}{
		{name: "object", args: `{"code":"print(1)","timeout":5}`, want: params{Code: "print(1)", Timeout: 5}},
		{name: "empty means no arguments", args: "", want: params{}},
		{name: "whitespace", args: "  \n", want: params{}},
		{name: "double encoded", args: `"{\"code\":\"print(2)\"}"`, want: params{Code: "print(2)"}},
		{name: "fenced", args: "```json\n{\"code\":\"print(3)\"}\n```", want: params{Code: "print(3)"}},
		{name: "unknown fields ignored", args: `{"code":"x","lang":"py"}`, want: params{Code: "x"}},
		{name: "truncated", args: `{"code":"print(`, wantErr: "not valid JSON"},
		{name: "python dict", args: `{'code': 'print(1)'}`, wantErr: "not valid JSON"},
		{name: "trailing garbage", args: `{"code":"x"} thanks`, wantErr: "not valid JSON"},
		{name: "wrong type", args: `{"code": 42}`, wantErr: `argument "code" must be string, not number`},
		{name: "array", args: `["print(1)"]`, wantErr: "do not match"},
		{name: "plain string", args: `"print(1)"`, wantErr: "do not match"},
	}
	for _, tt := range tests {
		var got params
		err := ParseArguments(call("run_python", tt.args), &got)
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("%s: ParseArguments = %+v, %v; want %+v", tt.name, got, err, tt.want)
			}
			continue
		}
		var tce *ToolCallError
		if !errors.As(err, &tce) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error = %v; want *ToolCallError containing %q", tt.name, err, tt.wantErr)
			continue
		}
		if tce.Tool != "run_python" || tce.ID != "call_x" || !strings.Contains(err.Error(), `"run_python"`) {
			t.Errorf("%s: error does not name the call: %+v", tt.name, tce)
		}
	}
}

func TestParseArgumentsQuotesLongInputBriefly(t *testing.T) {
	t.Parallel()
	long := `{"code": "` + strings.Repeat("é", 5000)
	err := ParseArguments(call("run_python", long), new(map[string]any))
	if err == nil || len(err.Error()) > 1000 || !strings.Contains(err.Error(), "…") {
		t.Errorf("error not bounded: %d bytes", len(err.Error()))
	}
}

func TestValidateToolCall(t *testing.T) {
	t.Parallel()
	tools := []Tool{runPython, NewTool("finish", "Give the final answer.", `{"type":"object"}`)}
	tests := []struct {
		name    string
		tool    string
		wantErr string
	}{
		{"known", "run_python", ""},
		{"other known", "finish", ""},
		{"unknown", "bash", `unknown tool; available tools: run_python, finish`},
		{"empty", "", "no function name"},
	}
	for _, tt := range tests {
		err := ValidateToolCall(call(tt.tool, "{}"), tools)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error = %v; want %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestExtractToolCalls(t *testing.T) {
	t.Parallel()
	tools := []Tool{runPython, NewTool("finish", "", "")}
	tests := []struct {
		name    string
		content string
		want    []FunctionCall // ids are generated, not compared
	}{
		{
			name:    "bare object",
			content: `{"name": "run_python", "arguments": {"code": "print(1)"}}`,
			want:    []FunctionCall{{"run_python", `{"code":"print(1)"}`}},
		},
		{
			name:    "arguments as a string kept verbatim",
			content: `{"name": "run_python", "arguments": "{\"code\": \"print(1)\"}"}`,
			want:    []FunctionCall{{"run_python", `{"code": "print(1)"}`}},
		},
		{
			name:    "llama style parameters",
			content: `{"type": "function", "name": "finish", "parameters": {"answer": "55"}}`,
			want:    []FunctionCall{{"finish", `{"answer":"55"}`}},
		},
		{
			name:    "openai shape in a list",
			content: `[{"type":"function","function":{"name":"run_python","arguments":"{}"}},{"function":{"name":"finish"}}]`,
			want:    []FunctionCall{{"run_python", `{}`}, {"finish", `{}`}},
		},
		{
			name:    "hermes tags",
			content: "I'll run it.\n<tool_call>\n{\"name\": \"run_python\", \"arguments\": {\"code\": \"1\"}}\n</tool_call>",
			want:    []FunctionCall{{"run_python", `{"code":"1"}`}},
		},
		{
			name:    "fenced block after prose",
			content: "Here you go:\n```json\n{\"tool\": \"run_python\", \"args\": {\"code\": \"2\"}}\n```\nDone.",
			want:    []FunctionCall{{"run_python", `{"code":"2"}`}},
		},
		{
			name:    "object embedded in prose",
			content: `Calling {"name": "finish", "arguments": {"answer": "x"}} now`,
			want:    []FunctionCall{{"finish", `{"answer":"x"}`}},
		},
		{
			name:    "tool_calls wrapper",
			content: `{"tool_calls": [{"name": "finish", "arguments": {}}]}`,
			want:    []FunctionCall{{"finish", `{}`}},
		},
		{name: "unknown tool is not a call", content: `{"name": "bash", "arguments": {"cmd": "ls"}}`},
		{name: "json answer is not a call", content: `{"result": 55}`},
		{name: "prose", content: "The answer is 55."},
		{name: "broken json", content: `{"name": "run_python", "arguments": {`},
		{name: "empty", content: ""},
	}
	for _, tt := range tests {
		got := ExtractToolCalls(tt.content, tools)
		if len(got) != len(tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
			continue
		}
		for i, tc := range got {
			if tc.Function != tt.want[i] || tc.ID == "" || tc.Type != "function" {
				t.Errorf("%s: call %d = %+v, want %+v", tt.name, i, tc, tt.want[i])
			}
		}
	}
}
