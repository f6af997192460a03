package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// conversation is one trajectory's chat as every format renders it, made
// once per trajectory: the messages up to the model's last reply, each
// with its bytes (as recorded, or as rendered from the steps) and what the
// formats read of it, decoded once; and the tools offered. openai writes
// the bytes, sharegpt the decoded values, groups splits the bytes at the
// first model turn.
type conversation struct {
	// recorded is true for a model's exchange as recorded, false for a
	// conversation rendered from the steps (scripted, cached, rules).
	recorded bool
	messages []message
	// tools is the JSON array of tools offered; functions are their
	// function definitions (sharegpt's tools).
	tools     json.RawMessage
	functions []json.RawMessage
}

// message is one message of a conversation: its bytes (compact) and the
// part of it the formats read.
type message struct {
	raw        json.RawMessage
	role       string
	content    string
	toolCallID string
	calls      []toolCall
}

// toolCall is one call of an assistant message: its arguments as sent
// (a JSON object encoded as a string) and decoded (argsErr when they are
// not a JSON object).
type toolCall struct {
	id, name string
	args     map[string]any
	argsErr  error
}

// newConversation is tr's conversation: the recorded exchange when it has
// one, else the one its steps render. It is errEmpty when there is nothing
// to learn from (no model reply recorded; no model action in a failure).
func newConversation(tr *core.Trajectory, opts Options) (*conversation, error) {
	if len(tr.Messages) > 0 {
		return recordedConversation(tr, opts)
	}
	r, ok := render(tr, opts)
	if !ok {
		return nil, errEmpty
	}
	return r.conversation()
}

// firstModelTurn is the index of the first assistant message (every
// conversation has one).
func (c *conversation) firstModelTurn() int {
	for i, m := range c.messages {
		if m.role == "assistant" {
			return i
		}
	}
	return len(c.messages)
}

// raws are the bytes of messages.
func raws(ms []message) []json.RawMessage {
	out := make([]json.RawMessage, len(ms))
	for i, m := range ms {
		out[i] = m.raw
	}
	return out
}

// compact returns b without insignificant space, as the formats write it
// (and compare it).
func compact(b []byte) (json.RawMessage, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rendered is a trajectory as a chat, before it is a conversation: the
// prompt, one tool call per model action with its observation, and the
// final answer. It is built for trajectories that carry no recorded
// exchange with a model (scripted, cached, rules), from the agents' own
// prompts and tools (internal/prompt).
type rendered struct {
	system string
	user   string
	calls  []call
	final  string
	tools  []llm.Tool
}

// call is one model action and the observation it produced.
type call struct {
	id          string
	name        string
	args        map[string]any
	observation string
}

// Tool names the export needs to tell apart.
const (
	actionGoto = "goto"
)

// conversation makes r's messages in the OpenAI shape: system, user, then
// per model action an assistant message with one tool call and the tool
// message answering it, then the final assistant message.
func (r rendered) conversation() (*conversation, error) {
	c := &conversation{messages: make([]message, 0, 3+2*len(r.calls))}
	add := func(m openAIMessage, calls []toolCall) error {
		b, err := marshal(m)
		if err != nil {
			return err
		}
		c.messages = append(c.messages, message{raw: b, role: m.Role, content: m.Content, toolCallID: m.ToolCallID, calls: calls})
		return nil
	}
	if err := add(openAIMessage{Role: "system", Content: r.system}, nil); err != nil {
		return nil, err
	}
	if err := add(openAIMessage{Role: "user", Content: r.user}, nil); err != nil {
		return nil, err
	}
	for _, cl := range r.calls {
		args, err := marshalString(cl.args)
		if err != nil {
			return nil, err
		}
		tc := openAIToolCall{ID: cl.id, Type: "function", Function: openAIFunction{Name: cl.name, Arguments: args}}
		if err := add(openAIMessage{Role: "assistant", ToolCalls: []openAIToolCall{tc}}, []toolCall{{id: cl.id, name: cl.name, args: cl.args}}); err != nil {
			return nil, err
		}
		if err := add(openAIMessage{Role: "tool", ToolCallID: cl.id, Content: cl.observation}, nil); err != nil {
			return nil, err
		}
	}
	if err := add(openAIMessage{Role: "assistant", Content: r.final}, nil); err != nil {
		return nil, err
	}
	tools := r.tools
	if tools == nil {
		tools = []llm.Tool{}
	}
	var err error
	if c.tools, err = marshal(tools); err != nil {
		return nil, err
	}
	c.functions = make([]json.RawMessage, len(tools))
	for i, t := range tools {
		if c.functions[i], err = marshal(t.Function); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// otherSystemPrompt is the system prompt of a trajectory that mixes code and
// web tools (no agent sends such a conversation).
const otherSystemPrompt = "You are an agent that solves the user's task with the tools provided."

// Purposes of a code step (action_params.purpose).
const (
	purposeRun    = "run"
	purposeVerify = "verify"
	// purposeSetup: a workspace task's setup command, the platform's.
	purposeSetup = "setup"
)

// isWorkspace reports whether tr is a workspace task's: it has a diff, or
// a step of a workspace tool other than finish (a name web tasks share).
func isWorkspace(tr *core.Trajectory) bool {
	for _, k := range []core.MetaKey{core.MetaWorkspaceDiff, core.MetaWorkspaceDiffBase64, core.MetaWorkspaceDiffIncomplete} {
		if _, ok := tr.Metadata[k]; ok {
			return true
		}
	}
	for _, s := range tr.Steps {
		name, _ := s.ActionParams["tool"].(string)
		if _, ok := prompt.Find(name, prompt.WorkspaceTools); ok && name != core.CodeActionFinish {
			return true
		}
	}
	return false
}

// render turns a trajectory's steps into a chat. ok is false when the
// trajectory failed without a single model action: nothing to learn.
func render(tr *core.Trajectory, opts Options) (rendered, bool) {
	var c rendered
	steps := tr.Steps
	var start *core.ExecutionStep
	if len(steps) > 0 && isInitialNavigation(steps[0]) {
		start, steps = &steps[0], steps[1:]
	}
	used := map[string]llm.Tool{}
	var stdin string
	ws := isWorkspace(tr)
	for i := range steps {
		s := &steps[i]
		name, args, ok := modelAction(s)
		if !ok {
			continue
		}
		if v, ok := s.ActionParams["stdin"].(string); ok && stdin == "" && s.ActionType == core.ActionCodeExecution {
			stdin = v
		}
		var def llm.Tool
		if t, ok := prompt.Find(name, prompt.WorkspaceTools); ws && ok {
			def = t
		} else {
			def = definitionFor(used, name, args)
		}
		used[name] = def
		c.calls = append(c.calls, call{
			id:          fmt.Sprintf("call_%d", len(c.calls)+1),
			name:        name,
			args:        declaredOnly(def, args),
			observation: observationOf(s),
		})
	}

	_, checked := tr.Metadata[core.MetaVerified].(bool)
	if _, ok := tr.Metadata[core.MetaTestOutput]; ok {
		checked = true // a workspace task whose test_command ran
	}
	code := prompt.CodeUser(prompt.CodeTask{Description: tr.Description, Stdin: stdin, Checked: checked})
	var web string
	if start != nil {
		web = prompt.WebUser(tr.Description, observationOf(start), true)
	} else {
		web = prompt.WebUser(tr.Description, "", false)
	}

	c.final = finalAnswer(tr)
	if len(c.calls) == 0 && !tr.Success {
		return c, false
	}
	if ws {
		// A workspace task: its agent's prompts and its whole tool set.
		c.tools = prompt.WorkspaceTools
		c.system, c.user = prompt.WorkspaceSystem, prompt.WorkspaceUser(prompt.WorkspaceTask{Description: tr.Description, Checked: checked})
		if opts.SystemPrompt != "" {
			c.system = opts.SystemPrompt
		}
		return c, true
	}

	// The tools offered: the runtime's whole set for the task's kind (the
	// model chose among them), plus anything else a step used.
	offered := map[string]bool{}
	offer := func(t llm.Tool) {
		if !offered[t.Function.Name] {
			offered[t.Function.Name] = true
			c.tools = append(c.tools, t)
		}
	}
	isWeb := tr.TaskType == core.TaskWeb || start != nil
	isCode := tr.TaskType == core.TaskCode || tr.TaskType == core.TaskReasoning
	for _, cl := range c.calls {
		if _, ok := prompt.Find(cl.name, prompt.WebTools, prompt.WebExtraTools); ok {
			isWeb = true
		}
		if cl.name == prompt.ToolRunPython {
			isCode = true
		}
	}
	if isCode {
		offer(prompt.RunPython)
	}
	if isWeb {
		for _, t := range prompt.WebTools {
			offer(t)
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
	switch {
	case isWeb && !isCode:
		c.system, c.user = prompt.WebSystem, web
	case isCode && !isWeb:
		c.system, c.user = prompt.CodeSystem, code
	default:
		c.system, c.user = otherSystemPrompt, code
	}
	if opts.SystemPrompt != "" {
		c.system = opts.SystemPrompt
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
		if purpose, _ := p["purpose"].(string); purpose == purposeVerify || purpose == purposeSetup {
			return "", nil, false
		}
		if name, _ := p["tool"].(string); name != "" {
			// A workspace step: bash or python with its arguments.
			a, _ := p["arguments"].(map[string]any)
			return name, a, true
		}
		code, _ := p["code"].(string)
		return prompt.ToolRunPython, map[string]any{"code": code}, true
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

// definitionFor returns the definition of a used tool: the agents' own
// (internal/prompt), or, for a tool no agent offers, one inferred from the
// arguments of its calls.
func definitionFor(used map[string]llm.Tool, name string, args map[string]any) llm.Tool {
	if t, ok := prompt.Find(name, []llm.Tool{prompt.RunPython}, prompt.WebTools, prompt.WebExtraTools); ok {
		return t
	}
	props := map[string]map[string]string{}
	if t, ok := used[name]; ok {
		var prev struct {
			Properties map[string]map[string]string `json:"properties"`
		}
		if json.Unmarshal(t.Function.Parameters, &prev) == nil && prev.Properties != nil {
			props = prev.Properties
		}
	}
	for k, v := range args {
		if _, ok := props[k]; !ok {
			props[k] = map[string]string{"type": jsonType(v)}
		}
	}
	params, _ := json.Marshal(map[string]any{"type": "object", "properties": props})
	return llm.NewTool(name, "The "+name+" tool.", string(params))
}

// declaredOnly keeps the arguments the tool's schema declares: a step's
// other params (the runtime's own, such as a screenshot's file name) were
// not the model's to give.
func declaredOnly(t llm.Tool, args map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range prompt.Properties(t) {
		if v, ok := args[k]; ok {
			out[k] = v
		}
	}
	return out
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
	if a, ok := tr.Metadata[core.MetaAnswer].(string); ok && strings.TrimSpace(a) != "" {
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
