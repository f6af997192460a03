package core

import (
	"encoding/json"
	"time"
)

// SchemaVersion is written into every trajectory. Bump it when a field
// changes meaning; adding a field does not need a bump.
const SchemaVersion = 1

// ActionType says what kind of action a step performed.
type ActionType string

const (
	ActionCodeExecution ActionType = "code_execution"
	ActionBrowser       ActionType = "browser_action"
	ActionToolCall      ActionType = "tool_call"
)

// ErrorType classifies a failure; it is the `error_type` label of
// tasks_failed_total. The empty ErrorType means "no error" and is written as
// JSON null.
type ErrorType string

const (
	ErrNone        ErrorType = ""
	ErrTimeout     ErrorType = "timeout"
	ErrNetwork     ErrorType = "network_error"
	ErrCompile     ErrorType = "compile_error"
	ErrRuntime     ErrorType = "runtime_error"
	ErrBrowser     ErrorType = "browser_error"
	ErrSystem      ErrorType = "system_error"
	ErrMemoryLimit ErrorType = "memory_limit"
	ErrOutputLimit ErrorType = "output_limit"
	ErrWrongAnswer ErrorType = "wrong_answer"
	ErrBlockedURL  ErrorType = "blocked_url"
	// ErrNoModel: no model is configured (LLM_BASE_URL) and nothing else
	// gives the task a program or actions (no rule, no scripted actions):
	// a configuration to fix, not a failure of the platform.
	ErrNoModel ErrorType = "no_model"
	// ErrSetup: a workspace task's setup command failed, before the agent
	// started: the task (or its seed) is at fault, not the agent.
	ErrSetup ErrorType = "setup_failed"
	// ErrLLMRefused: the model server answered and refused the request
	// (a 4xx other than 408 and 429: a bad request, a wrong key, an
	// unknown model); not a network error, and sending it again gets the
	// same answer.
	ErrLLMRefused ErrorType = "llm_refused"
	// ErrContextExceeded: the model server refused the request because
	// the conversation does not fit the model's context.
	ErrContextExceeded ErrorType = "context_exceeded"
)

// ErrorTypes lists every non-empty ErrorType.
var ErrorTypes = []ErrorType{
	ErrTimeout, ErrNetwork, ErrCompile, ErrRuntime, ErrBrowser, ErrSystem,
	ErrMemoryLimit, ErrOutputLimit, ErrWrongAnswer, ErrBlockedURL, ErrNoModel, ErrSetup,
	ErrLLMRefused, ErrContextExceeded,
}

// MarshalJSON writes ErrNone as null, as the blueprint's files do.
func (e ErrorType) MarshalJSON() ([]byte, error) {
	if e == ErrNone {
		return []byte("null"), nil
	}
	return json.Marshal(string(e))
}

// UnmarshalJSON reads null as ErrNone.
func (e *ErrorType) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*e = ErrNone
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*e = ErrorType(s)
	return nil
}

// ExecutionStep is one action of a trajectory and what came of it.
type ExecutionStep struct {
	StepID       int            `json:"step_id"`
	ActionType   ActionType     `json:"action_type"`
	ActionParams map[string]any `json:"action_params"`
	Observation  string         `json:"observation"`
	Success      bool           `json:"success"`
	ErrorType    ErrorType      `json:"error_type"`
	ErrorMessage string         `json:"error_message"`
	Timestamp    float64        `json:"timestamp"` // unix seconds
	Duration     float64        `json:"duration"`  // seconds
}

// Trajectory is the record of one attempt of a task: the training data. One
// file per attempt, $OUTPUT_DIR/trajectories/<task_id>.json for attempt 0
// and <task_id>.sample-<k>.json for attempt k >= 1 (TrajectoryFileName).
type Trajectory struct {
	SchemaVersion int             `json:"schema_version"`
	TaskID        string          `json:"task_id"`
	TaskType      TaskType        `json:"task_type"`
	Description   string          `json:"description"`
	RuntimeID     string          `json:"runtime_id"`
	Success       bool            `json:"success"`
	Steps         []ExecutionStep `json:"steps"`
	FinalResult   string          `json:"final_result"`
	ErrorType     ErrorType       `json:"error_type"`
	ErrorMessage  string          `json:"error_message"`
	TotalDuration float64         `json:"total_duration"` // seconds
	Metadata      Metadata        `json:"metadata"`
	CreatedAt     float64         `json:"created_at"` // unix seconds

	// Reward is the fraction of the task's checks that passed, in [0, 1]
	// (1 or 0 for a single check); absent when the task has no verifier.
	// A check that could not run (the program failed first) did not pass.
	// A web task with a reward_script has the number its page computed
	// instead, as is (it may be negative); a workspace task whose check
	// wrote a Harbor reward file (reward.txt, reward.json) has that file's
	// scalar (workspace.ScalarReward, MetaVerifierRewards), as is.
	Reward *float64 `json:"reward,omitempty"`
	// ExitReason says why the attempt ended: one of ExitReasons.
	ExitReason ExitReason `json:"exit_reason"`

	// SampleIndex is this attempt's 0-based index among the task's Samples
	// attempts (task field `samples`, default 1).
	SampleIndex int `json:"sample_index"`
	Samples     int `json:"samples"`
	// LLM says which model, endpoint and sampling settings produced the
	// attempt; absent when no model was called.
	LLM *LLMRecord `json:"llm,omitempty"`

	// The conversation with a model, when one chose the actions, exactly as
	// exchanged: training data must be what the model saw and said, not a
	// rendering of it made later.

	// Messages are the OpenAI-format messages of the last request, each as
	// the client sent it, then the model's last reply in the same encoding
	// (the bytes a next request would carry).
	Messages []json.RawMessage `json:"messages,omitempty"`
	// Tools are the tool definitions as sent.
	Tools json.RawMessage `json:"tools,omitempty"`
	// ModelCalls has one entry per model call, in order.
	ModelCalls []ModelCall `json:"model_calls,omitempty"`
}

// ExitReason says why an attempt ended.
type ExitReason string

// The exit reasons, documented once (docs/trajectories.md's list is checked against
// ExitReasons).
const (
	// ExitAnswered: the model answered in text and the answer was accepted.
	ExitAnswered ExitReason = "answered"
	// ExitFinished: the model called a finishing tool (web or workspace
	// finish), or a workspace task's replayed actions ended with finish.
	ExitFinished ExitReason = "finished"
	// ExitMaxSteps: the step budget (max_steps) was spent.
	ExitMaxSteps ExitReason = "max_steps"
	// ExitMaxTurns: the model's turn budget (max_steps plus a few turns
	// for malformed calls, answers sent back with feedback) was spent
	// before the step budget: the model kept answering or calling tools
	// wrongly.
	ExitMaxTurns ExitReason = "max_turns"
	// ExitReplayed: a scripted or cached program or action sequence ran.
	ExitReplayed ExitReason = "replayed"
	// ExitRules: the blueprint's rules ran.
	ExitRules ExitReason = "rules"
	// ExitTimeout: a time limit ended the attempt.
	ExitTimeout ExitReason = "timeout"
	// ExitLLMError: the model could not be reached, or its server
	// refused the request (error_type network_error or llm_refused).
	ExitLLMError ExitReason = "llm_error"
	// ExitContextExceeded: the conversation outgrew the model's context
	// (the server refused the next request as too long).
	ExitContextExceeded ExitReason = "context_exceeded"
	// ExitInvalidTask: the task's constraints are invalid.
	ExitInvalidTask ExitReason = "invalid_task"
	// ExitNoSource: nothing could produce a program (no model, no rule).
	ExitNoSource ExitReason = "no_source"
	// ExitAborted: a failure the attempt cannot go on from (the start page
	// was blocked or failed, the browser died, a workspace reached its cap).
	ExitAborted ExitReason = "aborted"
	// ExitTampered: the test harness's guard stopped the program where it
	// reached for the harness's memory or the check (gc.get_objects,
	// ctypes, sys.settrace, hand-made code, a forged end of the tests), or
	// a workspace's verify step found the check's own code altered
	// (unittest's TestCase patched); error_message says what it did.
	// Never a success.
	ExitTampered ExitReason = "tampered"
)

// ExitReasons lists every ExitReason.
var ExitReasons = []ExitReason{ExitAnswered, ExitFinished, ExitMaxSteps, ExitMaxTurns, ExitReplayed, ExitRules,
	ExitTimeout, ExitLLMError, ExitContextExceeded, ExitInvalidTask, ExitNoSource, ExitAborted, ExitTampered}

// ExitFor is the exit reason of an attempt that a failure of type et ended
// before the agent was done: the one mapping from an ending failure to an
// exit reason.
func ExitFor(et ErrorType) ExitReason {
	switch et {
	case ErrTimeout:
		return ExitTimeout
	case ErrNetwork, ErrLLMRefused:
		return ExitLLMError
	case ErrContextExceeded:
		return ExitContextExceeded
	}
	return ExitAborted
}

// SetReward records passed of total checks as the reward; total 0 (no
// verifier) leaves it absent.
func (tr *Trajectory) SetReward(passed, total int) {
	if total <= 0 {
		tr.Reward = nil
		return
	}
	r := float64(passed) / float64(total)
	tr.Reward = &r
}

// SetPageReward records a reward a task's own page computed, as is.
func (tr *Trajectory) SetPageReward(r float64) { tr.Reward = &r }

// LLMRecord is the model side of an attempt, as configured and sent.
type LLMRecord struct {
	Endpoint    string   `json:"endpoint"`
	Model       string   `json:"model"`
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	MaxTokens   *int     `json:"max_tokens,omitempty"`
	// Seed is the seed sent with this attempt (the task's or runtime's seed
	// plus the sample index); absent when none was sent.
	Seed *int64 `json:"seed,omitempty"`
	// ToolMode is how tools reached the model: native (the API's tool
	// calls) or text (described in the prompt, parsed from the reply).
	ToolMode string `json:"tool_mode"`
	// API is the endpoint kind: chat (/v1/chat/completions) or completions
	// (/v1/completions, the transcript rendered as one prompt).
	API string `json:"api"`
}

// ModelCall is one call of the model.
type ModelCall struct {
	// ID, Model and SystemFingerprint are the response's "id", "model"
	// (the model that served the call, as the server names it) and
	// "system_fingerprint"; absent when the server sent none.
	ID                string     `json:"id,omitempty"`
	Model             string     `json:"model,omitempty"`
	SystemFingerprint string     `json:"system_fingerprint,omitempty"`
	FinishReason      string     `json:"finish_reason"`
	Usage             TokenUsage `json:"usage"`
	// Reply is the response's message (chat) or choice (completions) as the
	// server sent it.
	Reply json.RawMessage `json:"reply"`
	// Prompt is the exact prompt string sent to /v1/completions; absent
	// with the chat API, whose request is Messages.
	Prompt string `json:"prompt,omitempty"`
	// Logprobs is the choice's logprobs object as the server sent it, when
	// it sent one (LLM_LOGPROBS=true asks for it).
	Logprobs json.RawMessage `json:"logprobs,omitempty"`
	// PromptTokenIDs and CompletionTokenIDs are the token ids when the
	// server returns them (vLLM with return_token_ids).
	PromptTokenIDs     []int `json:"prompt_token_ids,omitempty"`
	CompletionTokenIDs []int `json:"completion_token_ids,omitempty"`
	// Tokens says how far the logprobs and token ids cover the tokens the
	// usage counts, when they were asked for (LLM_LOGPROBS); absent
	// otherwise. A trainer must not assume alignment it does not state.
	Tokens *TokenCoverage `json:"tokens,omitempty"`
}

// TokenCoverage compares what a server returned per token with the token
// counts of its usage.
type TokenCoverage struct {
	Logprobs           Coverage `json:"logprobs"`
	PromptTokenIDs     Coverage `json:"prompt_token_ids"`
	CompletionTokenIDs Coverage `json:"completion_token_ids"`
}

// Coverage is how many entries a server returned, of how many tokens.
type Coverage struct {
	// Status is CoverageComplete, CoverageIncomplete, CoverageMissing or
	// CoverageUnchecked.
	Status string `json:"status"`
	// Count is the number of entries returned (logprobs: the tokens its
	// object covers).
	Count int `json:"count"`
}

// Coverage statuses.
const (
	// CoverageComplete: one entry per token the usage counts.
	CoverageComplete = "complete"
	// CoverageIncomplete: some entries, not as many as the usage counts
	// tokens (llama.cpp gives no logprob to a token that ends inside a
	// UTF-8 character): entries cannot be matched to tokens by position.
	CoverageIncomplete = "incomplete"
	// CoverageMissing: asked for, none returned (llama.cpp ignores
	// return_token_ids).
	CoverageMissing = "missing"
	// CoverageUnchecked: entries returned, but the usage gives no token
	// count to check them against.
	CoverageUnchecked = "unchecked"
)

// CoverageOf compares count entries (present: the server sent the field at
// all) with the tokens counts tokens of the usage.
func CoverageOf(count int, present bool, tokens int) Coverage {
	switch {
	case !present || count == 0 && tokens > 0:
		return Coverage{Status: CoverageMissing, Count: count}
	case tokens <= 0:
		return Coverage{Status: CoverageUnchecked, Count: count}
	case count == tokens:
		return Coverage{Status: CoverageComplete, Count: count}
	}
	return Coverage{Status: CoverageIncomplete, Count: count}
}

// TokenUsage is a model call's token accounting.
type TokenUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// NewTrajectory starts the trajectory of task t on runtime runtimeID.
func NewTrajectory(t TaskSpec, runtimeID string) *Trajectory {
	return &Trajectory{
		SchemaVersion: SchemaVersion,
		TaskID:        t.TaskID,
		TaskType:      t.TaskType,
		Description:   t.Description,
		RuntimeID:     runtimeID,
		Steps:         []ExecutionStep{},
		Metadata:      Metadata{},
		CreatedAt:     UnixSeconds(time.Now()),
	}
}

// AddStep appends s, numbering it from 1. It returns nothing: a pointer
// into Steps would be left behind by the next append.
func (tr *Trajectory) AddStep(s ExecutionStep) {
	s.StepID = len(tr.Steps) + 1
	if s.ActionParams == nil {
		s.ActionParams = map[string]any{}
	}
	tr.Steps = append(tr.Steps, s)
}

// Fail marks the trajectory failed with the given classification.
func (tr *Trajectory) Fail(et ErrorType, msg string) {
	tr.Success = false
	tr.ErrorType = et
	tr.ErrorMessage = msg
}

// UnixSeconds converts t to the float unix seconds used in trajectories.
func UnixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
