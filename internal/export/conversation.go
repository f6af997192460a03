package export

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
)

// conversation is a trajectory as a chat, before it takes the shape of a
// format: the prompt, one tool call per model action with its observation,
// and the final answer.
type conversation struct {
	system string
	user   string
	calls  []call
	final  string
	tools  []toolDef
}

// call is one model action and the observation it produced.
type call struct {
	id          string
	name        string
	args        map[string]any
	observation string
}

// toolDef is a function the model is offered; parameters is a JSON schema
// object.
type toolDef struct {
	name        string
	description string
	parameters  schema
}

type schema struct {
	properties map[string]property
	required   []string
}

type property struct {
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
}

func (s schema) MarshalJSON() ([]byte, error) {
	props := s.properties
	if props == nil {
		props = map[string]property{}
	}
	v := struct {
		Type       string              `json:"type"`
		Properties map[string]property `json:"properties"`
		Required   []string            `json:"required,omitempty"`
	}{"object", props, s.required}
	return marshal(v)
}

func (d toolDef) withProperty(name string, p property) toolDef {
	props := make(map[string]property, len(d.parameters.properties)+1)
	for k, v := range d.parameters.properties {
		props[k] = v
	}
	props[name] = p
	d.parameters.properties = props
	return d
}

// Tool names. runPython matches the tool the sandbox runtime's LLM loop
// offers (internal/codeagent); the web names are the web runtime's actions.
const (
	toolRunPython = "run_python"

	actionGoto          = "goto"
	actionClick         = "click"
	actionFill          = "fill"
	actionPress         = "press"
	actionSelect        = "select"
	actionScroll        = "scroll"
	actionWait          = "wait"
	actionExtract       = "extract"
	actionFinish        = "finish"
	actionFillAndSubmit = "fill_and_submit"
)

func str(desc string) property { return property{Type: "string", Description: desc} }

var (
	selectorProp = str(`A Playwright selector: CSS, text=..., or role=...`)

	runPythonTool = toolDef{toolRunPython,
		"Run a complete Python 3 program in a sandbox and return its exit code, stdout and stderr.",
		schema{map[string]property{"code": str("The complete Python 3 program.")}, []string{"code"}}}

	// webTools are offered to every web task, in this order.
	webTools = []toolDef{
		{actionGoto, "Open a URL in the browser and return the page's title and text.",
			schema{map[string]property{"url": str("The absolute URL to open.")}, []string{"url"}}},
		{actionClick, "Click the first element matching the selector and return the page after it settles.",
			schema{map[string]property{"selector": selectorProp}, []string{"selector"}}},
		{actionFill, "Replace the value of the first input matching the selector with the text.",
			schema{map[string]property{"selector": selectorProp, "text": str("The text to type.")}, []string{"selector", "text"}}},
		{actionPress, "Focus the first element matching the selector and press a key.",
			schema{map[string]property{"selector": selectorProp, "key": str(`A key such as "Enter", "Tab" or "Control+A".`)}, []string{"selector", "key"}}},
		{actionSelect, "Choose the option whose value or label is the value in the first <select> matching the selector.",
			schema{map[string]property{"selector": selectorProp, "value": str("The option's value or label.")}, []string{"selector", "value"}}},
		{actionScroll, "Scroll the page down by most of the viewport and return the page text.",
			schema{}},
		{actionWait, "Wait for an element matching the selector to be visible.",
			schema{map[string]property{"selector": selectorProp}, []string{"selector"}}},
		{actionExtract, "Return the visible text of every element matching the selector, one per line.",
			schema{map[string]property{"selector": selectorProp}, []string{"selector"}}},
		{actionFinish, "End the task and give the final answer.",
			schema{map[string]property{"answer": str("The answer to the task.")}, []string{"answer"}}},
	}

	// extraWebTools are known but not offered unless a trajectory used them.
	extraWebTools = []toolDef{
		{actionFillAndSubmit, "Fill the first input matching the selector with the text and press Enter.",
			schema{map[string]property{"selector": selectorProp, "text": str("The text to type.")}, []string{"selector", "text"}}},
	}
)

// System prompts per task type, used unless Options.SystemPrompt is set.
const (
	codeSystemPrompt  = "You are a careful Python programming agent. Solve the user's task by writing a complete Python 3 program and running it with the run_python tool. The program runs in a sandbox without network access; it must print its answer to standard output. Read each run's observation (exit code, stdout, stderr) and fix the program if needed. When the last run printed the right answer, reply with that answer in plain text and do not call a tool."
	webSystemPrompt   = "You are a web browsing agent. Solve the user's task by acting on the browser with the tools: each call returns what the page shows afterwards. Use precise selectors. When you have the answer, call finish with it."
	otherSystemPrompt = "You are an agent that solves the user's task with the tools provided."
)

// Purposes of a code step (action_params.purpose).
const (
	purposeRun    = "run"
	purposeVerify = "verify"
)

// toConversation turns a trajectory into a conversation. ok is false when
// the trajectory failed without a single model action: nothing to learn.
func toConversation(tr *core.Trajectory, opts Options) (conversation, bool) {
	c := conversation{system: opts.SystemPrompt}
	steps := tr.Steps
	var start *core.ExecutionStep
	if len(steps) > 0 && isInitialNavigation(steps[0]) {
		start, steps = &steps[0], steps[1:]
	}
	used := map[string]toolDef{}
	var stdin string
	for i := range steps {
		s := &steps[i]
		name, args, ok := modelAction(s)
		if !ok {
			continue
		}
		if v, ok := s.ActionParams["stdin"].(string); ok && stdin == "" && s.ActionType == core.ActionCodeExecution {
			stdin = v
		}
		c.calls = append(c.calls, call{
			id:          fmt.Sprintf("call_%d", len(c.calls)+1),
			name:        name,
			args:        args,
			observation: observationOf(s),
		})
		used[name] = definitionFor(used, name, args)
	}

	var b strings.Builder
	b.WriteString("Task: ")
	b.WriteString(tr.Description)
	if stdin != "" {
		b.WriteString("\n\nThe program's standard input will be:\n")
		b.WriteString(stdin)
	}
	if start != nil {
		url, _ := start.ActionParams["url"].(string)
		fmt.Fprintf(&b, "\n\nThe browser has opened %s. The page shows:\n%s", url, observationOf(start))
	}
	c.user = b.String()

	c.final = finalAnswer(tr)
	if len(c.calls) == 0 && !tr.Success {
		return c, false
	}

	// The tools offered: the runtime's whole set for the task's kind (the
	// model chose among them), plus anything else a step used.
	offered := map[string]bool{}
	offer := func(d toolDef) {
		if offered[d.name] {
			return
		}
		offered[d.name] = true
		if u, ok := used[d.name]; ok {
			d = u // may carry extra properties seen in the steps
		}
		c.tools = append(c.tools, d)
	}
	isWeb := tr.TaskType == core.TaskWeb || start != nil
	isCode := tr.TaskType == core.TaskCode || tr.TaskType == core.TaskReasoning
	for _, cl := range c.calls {
		if _, ok := knownWebTool(cl.name); ok {
			isWeb = true
		}
		if cl.name == toolRunPython {
			isCode = true
		}
	}
	if isCode {
		offer(runPythonTool)
	}
	if isWeb {
		for _, d := range webTools {
			offer(d)
		}
	}
	var rest []string
	for name := range used {
		if !offered[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		offer(used[name])
	}
	if c.system == "" {
		switch {
		case isWeb && !isCode:
			c.system = webSystemPrompt
		case isCode && !isWeb:
			c.system = codeSystemPrompt
		default:
			c.system = otherSystemPrompt
		}
	}
	return c, true
}

// isInitialNavigation reports whether the first step is the runtime opening
// the task's start URL: not a model action, but the first observation.
func isInitialNavigation(s core.ExecutionStep) bool {
	if initial, ok := s.ActionParams["initial"].(bool); ok {
		return initial
	}
	a, _ := s.ActionParams["action"].(string)
	return s.ActionType == core.ActionBrowser && a == actionGoto
}

// modelAction maps a step to the tool call the model made. Steps that are
// not model actions report ok == false: verification runs (purpose
// "verify": the platform runs the task's tests, the model does not see
// them as a call of its own) and LLM failures (tool "llm").
func modelAction(s *core.ExecutionStep) (name string, args map[string]any, ok bool) {
	p := s.ActionParams
	switch s.ActionType {
	case core.ActionCodeExecution:
		if purpose, _ := p["purpose"].(string); purpose == purposeVerify {
			return "", nil, false
		}
		code, _ := p["code"].(string)
		return toolRunPython, map[string]any{"code": code}, true
	case core.ActionBrowser:
		name, _ = p["action"].(string)
		if name == "" {
			return "", nil, false
		}
		return name, without(p, "action"), true
	case core.ActionToolCall:
		name, _ = p["tool"].(string)
		if name == "" || name == "llm" {
			return "", nil, false
		}
		if a, ok := p["arguments"].(map[string]any); ok {
			return name, a, true
		}
		return name, without(p, "tool"), true
	}
	return "", nil, false
}

func without(m map[string]any, key string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

func knownWebTool(name string) (toolDef, bool) {
	for _, d := range webTools {
		if d.name == name {
			return d, true
		}
	}
	for _, d := range extraWebTools {
		if d.name == name {
			return d, true
		}
	}
	return toolDef{}, false
}

// definitionFor returns the definition of a used tool: the known one,
// extended with any argument its schema lacks (so that every argument in
// the data is declared), or one inferred from the arguments.
func definitionFor(used map[string]toolDef, name string, args map[string]any) toolDef {
	d, ok := used[name]
	if !ok {
		switch known, isWeb := knownWebTool(name); {
		case name == toolRunPython:
			d = runPythonTool
		case isWeb:
			d = known
		default:
			d = toolDef{name: name, description: "The " + name + " tool."}
		}
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := d.parameters.properties[k]; !ok {
			d = d.withProperty(k, property{Type: jsonType(args[k])})
		}
	}
	return d
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64, int, int64, json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "string"
}

// observationOf is what the model saw after a step: its observation, with
// the error appended when the observation does not already state it.
func observationOf(s *core.ExecutionStep) string {
	obs := s.Observation
	if !s.Success && s.ErrorMessage != "" && !strings.Contains(obs, s.ErrorMessage) {
		e := "error: "
		if s.ErrorType != core.ErrNone {
			e += string(s.ErrorType) + ": "
		}
		e += s.ErrorMessage
		if obs != "" {
			obs += "\n"
		}
		obs += e
	}
	if obs == "" {
		obs = "(no output)"
	}
	return obs
}

// finalAnswer is the last assistant message: the model's own answer when
// recorded (metadata.answer), else the final result, else what went wrong.
func finalAnswer(tr *core.Trajectory) string {
	if a, ok := tr.Metadata["answer"].(string); ok && strings.TrimSpace(a) != "" {
		return a
	}
	if strings.TrimSpace(tr.FinalResult) != "" {
		return tr.FinalResult
	}
	if tr.Success {
		return "Done."
	}
	msg := "I could not complete the task"
	if tr.ErrorType != core.ErrNone {
		msg += " (" + string(tr.ErrorType) + ")"
	}
	if tr.ErrorMessage != "" {
		msg += ": " + tr.ErrorMessage
	}
	return msg + "."
}
