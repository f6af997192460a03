package export

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// conversation is a trajectory as a chat, before it takes the shape of a
// format: the prompt, one tool call per model action with its observation,
// and the final answer. It is built for trajectories that carry no recorded
// exchange with a model (scripted, cached, rules), from the agents' own
// prompts and tools (internal/prompt).
type conversation struct {
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

// toConversation turns a trajectory into a conversation. ok is false when
// the trajectory failed without a single model action: nothing to learn.
func toConversation(tr *core.Trajectory, opts Options) (conversation, bool) {
	var c conversation
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
