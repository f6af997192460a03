package codeagent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentdataplatform/adp/internal/agent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// A workspace task (files, workspace, setup, test_command, actions) is an
// attempt in a directory over many steps: the runtime opens a workspace,
// runs setup, then the task's actions or the model's tool calls, takes the
// diff, and only then runs test_command, which the agent never sees.

// purposeSetup marks a setup command's step (action_params.purpose): the
// platform's preparation, not an agent action. purposeVerify marks the
// test_command's step, as it marks the tests' run of a single program.
const purposeSetup = "setup"

// Bounds of what a workspace attempt records beside its steps.
const (
	// diffBytes bounds metadata.workspace_diff.
	diffBytes = 256 << 10
	// diffTimeout bounds the diff's jail run. The diff is the platform's
	// record of the attempt, taken even when the task's timeout ended it.
	diffTimeout = 30 * time.Second
)

// wsRun is one attempt of a workspace task.
type wsRun struct {
	// tampered: the verify step saw the check's own code altered (see
	// workspace.Verdict.Tampered); the exit reason says so.
	tampered bool
	// rewards and reward: what the check wrote to its reward file, when
	// it ran to its end (workspace.Verdict.Rewards and Reward).
	rewards map[string]float64
	reward  *float64
	a       *Agent
	task    core.TaskSpec
	c       Constraints
	tr      *core.Trajectory
	ws      *workspace.Workspace
	start   time.Time

	// finished: a finish action or tool ran, with answer.
	finished bool
	answer   *string
	// ended is the failure that ended the attempt before the agent was
	// done (the workspace cap, the task's timeout, the model unreachable);
	// the test_command does not run after it.
	ended    core.ErrorType
	endedMsg string
	// jailErr is a failure of the runtime (a jail that did not launch, the
	// host's file system): the task is retried, nothing is written.
	jailErr error
}

var _ agent.Task = (*wsRun)(nil)

// executeWorkspace performs a workspace task. The error is non-nil only for
// failures of the runtime.
func (a *Agent) executeWorkspace(ctx context.Context, task core.TaskSpec, c Constraints, tr *core.Trajectory, start time.Time) (*core.Trajectory, error) {
	w := &wsRun{a: a, task: task, c: c, tr: tr, start: start}
	deadline := time.Now().Add(time.Duration(task.Timeout) * time.Second)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if a.Workspaces == nil {
		tr.Fail(core.ErrSystem, "this runtime has no workspaces configured for a workspace task (files, workspace, setup, test_command, actions)")
		tr.ExitReason = core.ExitAborted
		return w.finish(), nil
	}
	ws, err := a.Workspaces.Open(ctx, workspace.Seed{Files: c.Files, From: c.Workspace})
	var seedErr *workspace.SeedError
	switch {
	case errors.As(err, &seedErr):
		tr.Fail(core.ErrSystem, "invalid workspace: "+err.Error())
		tr.ExitReason = core.ExitInvalidTask
		return w.finish(), nil
	case err != nil && ctx.Err() != nil:
		tr.Fail(core.ErrTimeout, "the task's timeout passed while opening a workspace: "+err.Error())
		tr.ExitReason = core.ExitTimeout
		return w.finish(), nil
	case err != nil:
		return nil, fmt.Errorf("task %s: open workspace: %w: %w", task.TaskID, ErrJail, err)
	}
	w.ws = ws
	defer func() {
		if err := ws.Close(); err != nil {
			a.Log.Warn("workspace close failed", "task_id", task.TaskID, "err", err)
		}
	}()
	if w.setup(ctx) {
		// No template cache: a workspace task is its files as much as its
		// description.
		x := agent.Executor{HasModel: a.LLM != nil, Metrics: a.Metrics, Log: a.Log}
		x.Run(ctx, tr, task, w)
	}
	if w.jailErr != nil {
		return nil, fmt.Errorf("task %s: %w: %w", task.TaskID, ErrJail, w.jailErr)
	}
	return w.finish(), nil
}

// setup runs the setup commands, each a step; a failing one makes the task
// invalid (it ends the attempt before the agent starts).
func (w *wsRun) setup(ctx context.Context) bool {
	for i, cmd := range w.c.Setup {
		step, ok := w.shell(ctx, core.CodeAction{Action: core.CodeActionBash, Command: cmd}, purposeSetup, w.remaining(ctx))
		if !ok {
			w.concludeEnded()
			return false
		}
		if !step.Success {
			w.tr.Fail(core.ErrSetup, fmt.Sprintf("setup command %d (%s) failed: %s", i+1, clip(cmd, 200), step.ErrorMessage))
			w.tr.ExitReason = core.ExitInvalidTask
			return false
		}
	}
	if len(w.c.Setup) == 0 {
		return true
	}
	// The diff's base is the state setup left: the agent's patch is what
	// the agent changed, not what setup did.
	if err := w.ws.Snapshot(ctx); err != nil {
		if ctx.Err() != nil {
			w.ended, w.endedMsg = core.ErrTimeout, fmt.Sprintf("the task's timeout (%d s) passed", w.task.Timeout)
			w.concludeEnded()
			return false
		}
		w.tr.Fail(core.ErrSystem, "the state after setup cannot be the diff's base: "+err.Error())
		w.tr.ExitReason = core.ExitInvalidTask
		return false
	}
	return true
}

// remaining is what is left of the task's time.
func (w *wsRun) remaining(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), 100*time.Millisecond)
	}
	return w.a.Limits.Wall
}

// stepTimeout is the timeout of an agent's bash or python step: its own
// (seconds) or SANDBOX_RUN_TIMEOUT, cut to what is left of the task.
func (w *wsRun) stepTimeout(ctx context.Context, a core.CodeAction) time.Duration {
	t := w.a.Limits.Wall
	if a.Timeout != nil {
		t = time.Duration(*a.Timeout) * time.Second
	}
	if t <= 0 {
		t = workspace.DefaultStepTimeout
	}
	return min(t, w.remaining(ctx))
}

// Scripted replays constraints.actions, up to max_steps of them.
func (w *wsRun) Scripted(ctx context.Context) bool {
	if w.c.Actions == nil {
		return false
	}
	for i, a := range w.c.Actions {
		if i >= w.task.MaxSteps {
			w.tr.Metadata[core.MetaStopReason] = string(core.ExitMaxSteps)
			w.tr.ExitReason = core.ExitMaxSteps
			break
		}
		if _, done := w.do(ctx, a); done || w.ended != "" || w.jailErr != nil {
			break
		}
	}
	switch {
	case w.ended != "":
		w.tr.ExitReason = core.ExitFor(w.ended)
	case w.finished:
		w.tr.ExitReason = core.ExitFinished
	}
	return true
}

// CacheKey is not used: workspace tasks are not cached.
func (w *wsRun) CacheKey() string { return "" }

// Replay replays nothing: workspace tasks are not cached.
func (w *wsRun) Replay(context.Context, templatecache.Entry) bool { return false }

// Entry caches nothing.
func (w *wsRun) Entry() (templatecache.Entry, bool) { return templatecache.Entry{}, false }

// Rules: the blueprint has none for workspaces.
func (w *wsRun) Rules(context.Context) bool {
	w.tr.Fail(core.ErrNoModel, "no LLM is configured (set LLM_BASE_URL) and the workspace task has no actions; "+
		"give it constraints.actions or configure an OpenAI-compatible LLM")
	return false
}

// Model runs the LLM loop with the workspace tools.
func (w *wsRun) Model(ctx context.Context) {
	user := prompt.WorkspaceUser(prompt.WorkspaceTask{Description: w.task.Description, Checked: w.c.TestCommand != ""})
	loop := agent.NewLoop(w.a.LLM, w.task)
	out, err := loop.Run(ctx, []llm.Message{llm.SystemMessage(prompt.WorkspaceSystem), llm.UserMessage(user)}, &wsTools{w: w})
	out.Record(ctx, w.tr, err, w.start)
	if out.Answer != "" && w.answer == nil {
		w.answer = &out.Answer
	}
	switch {
	case err != nil && w.ended == "":
		// Record added the failed call's step and its exit reason.
		w.ended, w.endedMsg = w.tr.Steps[len(w.tr.Steps)-1].ErrorType, err.Error()
	case w.ended != "":
		// The loop saw a tool end it; why is the attempt's exit reason.
		w.tr.ExitReason = core.ExitFor(w.ended)
	}
}

// Conclude takes the diff, runs test_command when the attempt got that far,
// and decides success and reward: success only when test_command ran and
// passed (or, without one, when the attempt ended normally).
func (w *wsRun) Conclude(ctx context.Context) {
	tr := w.tr
	if w.answer != nil {
		tr.FinalResult = *w.answer
		tr.Metadata[core.MetaAnswer] = *w.answer
	}
	diffOK := w.recordDiff(ctx)
	passed := 0
	defer func() {
		tr.SetReward(passed, w.c.Checks())
		if w.reward != nil && w.ended == "" && w.jailErr == nil {
			// The check's own reward: its scalar (success is it reaching
			// workspace.RewardThreshold, which Passed already says).
			r := *w.reward
			tr.Reward = &r
			tr.Metadata[core.MetaVerifierRewards] = w.rewards
		}
	}()
	if w.ended != "" || w.jailErr != nil {
		w.concludeEnded()
		return
	}
	if !diffOK {
		// The record of what the agent did is not whole: whatever the
		// tests say, this is no example of a success.
		tr.Fail(core.ErrSystem, "the workspace diff could not be taken completely: "+clip(orString(incomplete(tr), "it failed"), 300))
		return
	}
	if w.c.TestCommand == "" {
		tr.Success, tr.ErrorType, tr.ErrorMessage = true, core.ErrNone, ""
		return
	}
	ok, msg := w.runTests(ctx)
	if w.ended != "" || w.jailErr != nil {
		w.concludeEnded()
		return
	}
	tr.Metadata[core.MetaVerified] = ok
	if !ok {
		tr.Fail(core.ErrWrongAnswer, msg)
		if w.tampered {
			tr.ExitReason = core.ExitTampered
		}
		return
	}
	passed = 1
	tr.Success, tr.ErrorType, tr.ErrorMessage = true, core.ErrNone, ""
}

// concludeEnded fails the trajectory with what ended the attempt.
func (w *wsRun) concludeEnded() {
	if w.ended != "" {
		w.tr.Fail(w.ended, w.endedMsg)
		if w.tr.ExitReason == "" {
			w.tr.ExitReason = core.ExitFor(w.ended)
		}
	}
}

// recordDiff keeps the workspace's diff against its base (the state
// after setup), as text or, when its bytes are not UTF-8, in base64. It
// reports whether the diff is the whole change; when not, why is
// metadata.workspace_diff_incomplete.
func (w *wsRun) recordDiff(ctx context.Context) bool {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diffTimeout)
	defer cancel()
	d, err := w.ws.Diff(dctx, diffBytes)
	if err != nil {
		w.a.Log.Warn("workspace diff failed", "task_id", w.task.TaskID, "err", err)
		w.tr.Metadata[core.MetaWorkspaceDiffIncomplete] = err.Error()
		return false
	}
	if utf8.ValidString(d.Patch) {
		w.tr.Metadata[core.MetaWorkspaceDiff] = d.Patch
	} else {
		w.tr.Metadata[core.MetaWorkspaceDiffBase64] = base64.StdEncoding.EncodeToString([]byte(d.Patch))
	}
	if d.Truncated {
		w.tr.Metadata[core.MetaWorkspaceDiffTruncated] = true
	}
	if d.Incomplete != "" {
		w.tr.Metadata[core.MetaWorkspaceDiffIncomplete] = d.Incomplete
		return false
	}
	return true
}

// incomplete is why the trajectory's diff is not whole.
func incomplete(tr *core.Trajectory) string {
	s, _ := tr.Metadata[core.MetaWorkspaceDiffIncomplete].(string)
	return s
}

// runTests runs test_command (with what is left of the task's time) as the
// verify step and returns its verdict: Workspace.Verify, a fresh jail and
// shell that none of the agent's state reaches, the hidden test_files at
// /tests, and a pass only on the evidence that the check ran to its end.
func (w *wsRun) runTests(ctx context.Context) (bool, string) {
	a := core.CodeAction{Action: core.CodeActionBash, Command: w.c.TestCommand}
	params := toolParams(a)
	params["purpose"] = purposeVerify
	started := time.Now()
	timeout := w.remaining(ctx)
	v, err := w.ws.Verify(ctx, workspace.Check{Command: w.c.TestCommand, TestFiles: w.c.TestFiles, Timeout: timeout})
	if err != nil {
		w.stepFailed(ctx, params, started, err)
		return false, ""
	}
	w.a.Metrics.SandboxExecDuration.Observe(v.Duration.Seconds())
	w.rewards, w.reward = v.Rewards, v.Reward
	params["exit_code"] = v.ExitCode
	step := core.ExecutionStep{
		ActionType: core.ActionCodeExecution, ActionParams: params, Observation: v.String(),
		Success: v.Passed, ErrorType: v.ErrorType, Timestamp: core.UnixSeconds(started), Duration: v.Duration.Seconds(),
	}
	var msg string
	switch {
	case v.ExitCode < 0:
		// The check could not be prepared: it did not run.
		step.ErrorType, step.ErrorMessage = core.ErrSystem, v.Reason
		msg = v.Reason
	case v.ErrorType != core.ErrNone:
		step.ErrorMessage = orString(v.Note, string(v.ErrorType))
		msg = "test_command failed: " + step.ErrorMessage
	case v.TimedOut:
		step.ErrorType, step.ErrorMessage = core.ErrTimeout, orString(v.Note, fmt.Sprintf("timed out after %s", timeout))
		msg = "test_command failed: " + step.ErrorMessage
	case v.Tampered && !v.Passed:
		// Whatever the exit status: the check's own code was altered.
		step.ErrorType, step.ErrorMessage = core.ErrWrongAnswer, v.Reason
		msg, w.tampered = "tampered: "+v.Reason, true
	case v.ExitCode != 0:
		step.ErrorType, step.ErrorMessage = core.ErrRuntime, fmt.Sprintf("exit status %d", v.ExitCode)
		msg = "test_command failed: " + step.ErrorMessage
	case !v.Passed && v.Reward != nil:
		// It ran to its end and scored below the threshold.
		step.ErrorType, step.ErrorMessage = core.ErrWrongAnswer, v.Reason
		msg = "test_command failed: " + v.Reason
	case !v.Passed:
		step.ErrorType, step.ErrorMessage = core.ErrWrongAnswer, v.Reason
		msg = "test_command exited 0 without evidence that it ran to its end: " + v.Reason
	}
	w.tr.AddStep(step)
	w.tr.Metadata[core.MetaTestOutput] = step.Observation
	return v.Passed, msg
}

// do performs one action as one step and returns the observation for the
// model; done is true after finish.
func (w *wsRun) do(ctx context.Context, a core.CodeAction) (string, bool) {
	if ctx.Err() != nil {
		w.ended, w.endedMsg = core.ErrTimeout, fmt.Sprintf("the task's timeout (%d s) passed", w.task.Timeout)
		return "error: " + w.endedMsg, true
	}
	switch a.Action {
	case core.CodeActionBash, core.CodeActionPython:
		step, ok := w.shell(ctx, a, purposeRun, w.stepTimeout(ctx, a))
		if !ok {
			return "error: " + w.endedMsg, true
		}
		return step.Observation, false
	case core.CodeActionFinish:
		w.finished, w.answer = true, a.Answer
		w.tr.AddStep(core.ExecutionStep{
			ActionType: core.ActionToolCall, ActionParams: toolParams(a), Observation: "finished", Success: true,
			Timestamp: core.UnixSeconds(time.Now()),
		})
		return "finished", true
	}
	return w.fileTool(a), w.ended != "" || w.jailErr != nil
}

// fileTool performs read_file, write_file or edit_file as a tool_call step.
func (w *wsRun) fileTool(a core.CodeAction) string {
	started := time.Now()
	var obs string
	var err error
	switch a.Action {
	case core.CodeActionReadFile:
		obs, err = w.ws.ReadFile(a.Path, deref(a.Offset), deref(a.Limit))
	case core.CodeActionWriteFile:
		content := derefString(a.Content)
		if err = w.ws.WriteFile(a.Path, content); err == nil {
			obs = fmt.Sprintf("wrote %d bytes to %s", len(content), a.Path)
		}
	case core.CodeActionEditFile:
		if err = w.ws.EditFile(a.Path, derefString(a.Old), derefString(a.New)); err == nil {
			obs = "replaced one occurrence in " + a.Path
		}
	}
	step := core.ExecutionStep{
		ActionType: core.ActionToolCall, ActionParams: toolParams(a), Observation: obs, Success: err == nil,
		Timestamp: core.UnixSeconds(started), Duration: time.Since(started).Seconds(),
	}
	var te *workspace.ToolError
	switch {
	case errors.As(err, &te):
		step.Observation = "error: " + te.Msg
		step.ErrorType, step.ErrorMessage = core.ErrRuntime, te.Msg
		if te.ErrorType != core.ErrNone {
			step.ErrorType = te.ErrorType
			w.ended, w.endedMsg = te.ErrorType, te.Msg
		}
	case err != nil:
		// The runtime's side failed (the host's file system): not the
		// agent's doing, so the task is retried.
		step.Observation = "error: the runtime could not perform the action"
		step.ErrorType, step.ErrorMessage = core.ErrSystem, err.Error()
		w.jailErr = err
	}
	w.tr.AddStep(step)
	return step.Observation
}

// shell runs a bash or python action as a code_execution step. setup runs
// in a fresh shell (Exec): the agent's saved exports and working directory
// neither reach it nor come from it (test_command runs in runTests). ok is
// false when the attempt cannot go on: the jail failed (jailErr) or the
// task's time ran out (ended).
func (w *wsRun) shell(ctx context.Context, a core.CodeAction, purpose string, timeout time.Duration) (core.ExecutionStep, bool) {
	params := toolParams(a)
	params["purpose"] = purpose
	started := time.Now()
	var obs workspace.Observation
	var err error
	switch {
	case a.Action == core.CodeActionPython:
		obs, err = w.ws.Python(ctx, a.Code, timeout)
	case purpose == purposeSetup:
		obs, err = w.ws.Exec(ctx, a.Command, timeout)
	default:
		obs, err = w.ws.Bash(ctx, a.Command, timeout)
	}
	if err != nil {
		return w.stepFailed(ctx, params, started, err), false
	}
	w.a.Metrics.SandboxExecDuration.Observe(obs.Duration.Seconds())
	params["exit_code"] = obs.ExitCode
	if obs.Cwd != "" {
		params["cwd"] = obs.Cwd
	}
	step := core.ExecutionStep{
		ActionType: core.ActionCodeExecution, ActionParams: params, Observation: obs.String(),
		Success:   obs.ExitCode == 0 && !obs.TimedOut && obs.ErrorType == core.ErrNone,
		ErrorType: obs.ErrorType, Timestamp: core.UnixSeconds(started), Duration: obs.Duration.Seconds(),
	}
	switch {
	case obs.ErrorType != core.ErrNone:
		step.ErrorMessage = orString(obs.Note, string(obs.ErrorType))
		if purpose != purposeSetup {
			w.ended, w.endedMsg = obs.ErrorType, step.ErrorMessage
		}
	case obs.TimedOut:
		step.ErrorType, step.ErrorMessage = core.ErrTimeout, orString(obs.Note, fmt.Sprintf("timed out after %s", timeout))
	case obs.ExitCode != 0:
		step.ErrorType, step.ErrorMessage = core.ErrRuntime, fmt.Sprintf("exit status %d", obs.ExitCode)
	}
	w.tr.AddStep(step)
	return step, w.ended == ""
}

// stepFailed records a step whose jail did not run (err): the task's time
// ran out (ended) or the runtime failed (jailErr, the task is retried).
func (w *wsRun) stepFailed(ctx context.Context, params map[string]any, started time.Time, err error) core.ExecutionStep {
	step := core.ExecutionStep{
		ActionType: core.ActionCodeExecution, ActionParams: params, ErrorMessage: err.Error(),
		Timestamp: core.UnixSeconds(started), Duration: time.Since(started).Seconds(),
	}
	if ctx.Err() != nil {
		step.ErrorType = core.ErrTimeout
		w.ended, w.endedMsg = core.ErrTimeout, fmt.Sprintf("the task's timeout (%d s) passed", w.task.Timeout)
	} else {
		w.a.Metrics.SandboxJailFailures.Inc()
		step.ErrorType = core.ErrSystem
		w.jailErr = err
		w.endedMsg = "the runtime could not run the step"
	}
	w.tr.AddStep(step)
	return step
}

// toolParams is a step's action_params: the tool and its arguments.
func toolParams(a core.CodeAction) map[string]any {
	return map[string]any{"tool": a.Action, "arguments": a.Arguments()}
}

func (w *wsRun) finish() *core.Trajectory {
	w.tr.TotalDuration = time.Since(w.start).Seconds()
	return w.tr
}

// wsTools adapts a workspace attempt to the agent loop.
type wsTools struct{ w *wsRun }

var _ agent.Tools = (*wsTools)(nil)

func (t *wsTools) Definitions() []llm.Tool { return prompt.WorkspaceTools }

// Call decodes the call with the rules of a task's actions and performs it;
// an attempt-ending failure ends the loop.
func (t *wsTools) Call(ctx context.Context, call llm.ToolCall) (string, bool) {
	var raw json.RawMessage
	if err := llm.ParseArguments(call, &raw); err != nil {
		return "error: " + err.Error(), false
	}
	a, err := core.ParseCodeAction(call.Function.Name, raw)
	if err != nil {
		return "error: " + err.Error(), false
	}
	obs, done := t.w.do(ctx, a)
	return obs, done || t.w.ended != "" || t.w.jailErr != nil
}

// Answer accepts a text answer: the attempt ends and test_command decides.
func (t *wsTools) Answer(context.Context, string) string { return "" }

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func orString(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
