// Package prompt is what a model is shown: the system prompts, the user
// prompts and the tool definitions of the code and web agents. It is the one
// definition of each: the agents send these values, and the export builds
// the conversations of trajectories that no model produced (scripted, cached,
// rules) from the same values. Trajectories of a model carry the exact
// messages and tools that were sent (core.Trajectory.Messages), and their
// export uses those, not these.
package prompt

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/agentdataplatform/adp/internal/llm"
)

// CodeSystem is the code agent's system prompt.
const CodeSystem = `You are a careful Python programming agent. Solve the user's task by writing a complete Python 3 program and running it with the run_python tool. The program runs in a sandbox without network access, with standard input as given by the task; it must print its answer to standard output. Read each run's observation (exit code, stdout, stderr) and fix the program if needed. When the last run printed the right answer, reply with that answer in plain text and do not call a tool.`

// ToolRunPython is the name of the code agent's tool.
const ToolRunPython = "run_python"

// RunPython is the code agent's tool.
var RunPython = llm.NewTool(ToolRunPython,
	"Run a complete Python 3 program in a sandbox and return its exit code, stdout and stderr.",
	`{"type":"object","properties":{"code":{"type":"string","description":"The complete Python 3 program."}},"required":["code"]}`)

// CodeTask is what the code agent's user prompt says of a task.
type CodeTask struct {
	Description string
	Stdin       string
	// Checked: the task has a verifier (expected output or tests).
	Checked bool
	// VisibleTests are quoted to the model when set; the task's other
	// tests never are.
	VisibleTests string
}

// CodeUser is the code agent's user prompt.
func CodeUser(t CodeTask) string {
	user := "Task: " + t.Description
	if t.Stdin != "" {
		user += "\n\nThe program's standard input will be:\n" + t.Stdin
	}
	if t.Checked || t.VisibleTests != "" {
		user += "\n\nThe result will be checked automatically."
	}
	if t.VisibleTests != "" {
		user += " These tests, among others, run after your program in the same interpreter:\n" + t.VisibleTests
	}
	return user
}

// WebSystem is the web agent's system prompt.
const WebSystem = `You are a web agent operating a real browser. Each tool performs one browser action and returns the page that follows: its URL, title, status, which part of the page the viewport shows, the visible text there, and an accessibility snapshot of the viewport in which each element has a ref such as [ref=e12]. Name an element by its ref (ref "e12", from the latest snapshot) or by a CSS or Playwright selector (for example "#q", "input[name=q]", "text=Next", "role=link[name='About']"). The observation shows only the viewport: scroll or find text to read more of a page. Work step by step. When the task is done, call finish with the answer the task asks for.`

// WebUser is the web agent's user prompt: the task and, when the runtime
// opened a start URL, the page it shows (the first step's observation).
func WebUser(description, startPage string, opened bool) string {
	user := "Task: " + description
	if opened {
		return user + "\n\nThe browser is on this page:\n" + startPage
	}
	return user + "\n\nThe browser is on a blank page; start with goto."
}

// element is the schema of an action on one element: a ref or a selector.
const element = `"ref":{"type":"string","description":"the element's ref in the latest snapshot, e.g. e12"},"selector":{"type":"string","description":"a CSS or Playwright selector, when there is no ref"}`

// WebTools are the web agent's tools, one per action, in the order offered.
var WebTools = []llm.Tool{
	llm.NewTool("goto", "Navigate to a URL (http or https).", `{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}`),
	llm.NewTool("click", "Click an element (by ref or selector).", `{"type":"object","properties":{`+element+`}}`),
	llm.NewTool("dblclick", "Double-click an element (by ref or selector).", `{"type":"object","properties":{`+element+`}}`),
	llm.NewTool("hover", "Move the mouse over an element (by ref or selector).", `{"type":"object","properties":{`+element+`}}`),
	llm.NewTool("fill", "Type text into an input (by ref or selector), replacing its value.", `{"type":"object","properties":{`+element+`,"text":{"type":"string"}},"required":["text"]}`),
	llm.NewTool("press", "Press a key (e.g. Enter) in an element (by ref or selector).", `{"type":"object","properties":{`+element+`,"key":{"type":"string"}},"required":["key"]}`),
	llm.NewTool("select", "Choose an option by value or label in a <select> (by ref or selector).", `{"type":"object","properties":{`+element+`,"value":{"type":"string"}},"required":["value"]}`),
	llm.NewTool("drag", "Drag an element (by ref or selector) onto a target element (by target_ref or target_selector).", `{"type":"object","properties":{`+element+`,"target_ref":{"type":"string"},"target_selector":{"type":"string"}}}`),
	llm.NewTool("mouse_click", "Click at a point of the viewport (x, y in CSS pixels from its top left).", `{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"]}`),
	llm.NewTool("key", "Press a key or a chord (e.g. Enter, Tab, Control+A) on whatever has the focus.", `{"type":"object","properties":{"key":{"type":"string"}},"required":["key"]}`),
	llm.NewTool("scroll", "Scroll the page by one screen, down (default) or up.", `{"type":"object","properties":{"direction":{"type":"string","enum":["down","up"]}}}`),
	llm.NewTool("find", "Scroll to the next place on the page that shows a text (case-insensitive).", `{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`),
	llm.NewTool("back", "Go back to the previous page.", `{"type":"object","properties":{}}`),
	llm.NewTool("switch_tab", "Act on another open tab (0 is the first; the observation lists open tabs).", `{"type":"object","properties":{"tab":{"type":"integer"}},"required":["tab"]}`),
	llm.NewTool("dialog", "Say how to answer the next dialog (alert, confirm, prompt): accept, with text as a prompt's answer, or dismiss. Dialogs are dismissed unless told otherwise; the observation reports each.", `{"type":"object","properties":{"accept":{"type":"boolean"},"text":{"type":"string"}},"required":["accept"]}`),
	llm.NewTool("wait", "Wait until an element matching a selector appears.", `{"type":"object","properties":{"selector":{"type":"string"}},"required":["selector"]}`),
	llm.NewTool("extract", "Return the text of the elements matching a selector.", `{"type":"object","properties":{"selector":{"type":"string"}},"required":["selector"]}`),
	llm.NewTool("finish", "Finish the task with the answer.", `{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}`),
}

// WebExtraTools are actions scripted tasks and the rules may use that the
// model is not offered (the blueprint's fill_and_submit); the export
// declares them only in records that use them.
var WebExtraTools = []llm.Tool{
	llm.NewTool("fill_and_submit", "Type text into an input matching a selector, then press Enter.", `{"type":"object","properties":{"selector":{"type":"string"},"text":{"type":"string"}},"required":["selector"]}`),
}

// Properties returns the argument names a tool's schema declares.
func Properties(t llm.Tool) []string {
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(t.Function.Parameters, &schema); err != nil {
		return nil
	}
	names := make([]string, 0, len(schema.Properties))
	for k := range schema.Properties {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Find returns the tool named name among tools.
func Find(name string, tools ...[]llm.Tool) (llm.Tool, bool) {
	for _, ts := range tools {
		for _, t := range ts {
			if t.Function.Name == name {
				return t, true
			}
		}
	}
	return llm.Tool{}, false
}

// TextTools is what text tool mode (LLM_TOOL_MODE=text) adds to the system
// prompt: how to call a tool in plain text, and each tool of tools with its
// description and JSON schema, the same definitions native mode sends.
func TextTools(tools []llm.Tool) string {
	var b strings.Builder
	b.WriteString("Tools: to call a tool, reply with one JSON object and nothing else, {\"tool\": \"<name>\", \"arguments\": {<arguments>}}.")
	if _, ok := Find(ToolRunPython, tools); ok {
		b.WriteString(" To call run_python you may instead reply with the program in one fenced code block, ```python ... ```.")
	}
	b.WriteString(" The tool's result comes back in the next user message. To give your final answer, reply in plain text without a code block or a tool call.\n\nAvailable tools:")
	for _, t := range tools {
		fmt.Fprintf(&b, "\n- %s: %s Arguments (JSON schema): %s", t.Function.Name, t.Function.Description, t.Function.Parameters)
	}
	return b.String()
}

// TextToolResult is how text tool mode reports one call's result; the
// results of one reply's calls go back together, separated by a blank
// line, as one user message.
func TextToolResult(tool, observation string) string {
	return "Result of " + tool + ":\n" + observation
}
