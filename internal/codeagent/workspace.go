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

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/rollout"
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

// workspaceEnv is the environment of one attempt of a workspace task.
type workspaceEnv struct {
	a      *Agent
	task   core.TaskSpec
	c      Constraints
	im     image
	ws     *workspace.Workspace
	budget rollout.Budget
	// started: setup is done and the agent may act (the diff's base is
	// taken); an attempt that ended before has no diff and no check.
	started bool
	// steps are the records of the call in progress.
	steps []core.ExecutionStep
	// tampered: the verify step saw the check's own code altered (see
	// workspace.Verdict.Tampered); the exit reason says so.
	tampered bool
	// rewards and reward: what the check wrote to its reward file, when
	// it ran to its end (workspace.Verdict.Rewards and Reward).
	rewards map[string]float64
	reward  *float64
	// finished: a finish action or tool ran, with answer.
	finished bool
	answer   *string
	// ended is the failure that ended the attempt before the agent was
	// done (the workspace cap, the task's timeout); the test_command does
	// not run after it.
	ended    core.ErrorType
	endedMsg string
	// jailErr is a failure of the runtime (a jail that did not launch, the
	// host's file system): the task is retried, nothing is written.
	jailErr error
	// testOutput is the verify step's observation, when test_command ran.
	testOutput *string
}

// Start opens the workspace (its seed files or directory) and runs the
// setup commands, each a step; a failing one makes the task invalid.
func (w *workspaceEnv) Start(ctx context.Context, opts rollout.StartOptions) (rollout.Start, error) {
	w.budget = opts.Budget
	st := rollout.Start{
		Result: rollout.Result{Metadata: w.im.metadata()},
		Space:  rollout.ActionSpace{Instructions: prompt.WorkspaceSystem, Tools: prompt.WorkspaceTools},
	}
	st.Observation.Text = prompt.WorkspaceUser(prompt.WorkspaceTask{Description: w.task.Description, Checked: w.c.TestCommand != ""})
	invalid := func(et core.ErrorType, msg string) (rollout.Start, error) {
		st.Invalid, st.End = true, &rollout.Failure{Type: et, Message: msg}
		st.Steps, w.steps = w.steps, nil
		return st, nil
	}
	if w.a.Workspaces == nil {
		st.End = &rollout.Failure{Type: core.ErrSystem, Message: "this runtime has no workspaces configured for a workspace task (files, workspace, setup, test_command, actions)"}
		return st, nil
	}
	seed := workspace.Seed{Files: w.c.Files, From: w.c.Workspace, Image: w.im.img, WritableRoot: w.c.WritableRoot, Resources: w.c.Resources}
	if len(w.c.Setup) > 0 && w.task.Samples > 1 {
		// The k attempts of the task start from one post-setup snapshot.
		return w.startPrepared(ctx, seed, st, invalid)
	}
	ws, err := w.a.Workspaces.Open(ctx, seed)
	if why, ok := seedInvalid(err); ok {
		return invalid(core.ErrSystem, why)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		st.End = &rollout.Failure{Type: core.ErrTimeout, Message: "the task's timeout passed while opening a workspace: " + err.Error()}
		return st, nil
	case err != nil:
		return st, fmt.Errorf("open workspace: %w", err)
	}
	w.ws = ws
	failed, err := w.runSetup(ctx)
	if err != nil {
		return st, err
	}
	st.Steps, w.steps = w.steps, nil
	switch {
	case failed != nil && failed.invalid:
		st.Invalid, st.End = true, &failed.Failure
		return st, nil
	case failed != nil:
		st.End = &failed.Failure
		return st, nil
	}
	if len(w.c.Setup) > 0 {
		// The diff's base is the state setup left: the agent's patch is
		// what the agent changed, not what setup did.
		if err := w.ws.Snapshot(ctx); err != nil {
			if ctx.Err() != nil {
				st.End = w.timedOut()
				return st, nil
			}
			return invalid(core.ErrSystem, "the state after setup cannot be the diff's base: "+err.Error())
		}
	}
	w.started = true
	return st, nil
}

// seedInvalid says why err, of opening a workspace, is the task's: its
// seed or image unusable, or a writable root this runtime cannot mount.
func seedInvalid(err error) (string, bool) {
	var seedErr *workspace.SeedError
	switch {
	case errors.As(err, &seedErr):
		return "invalid workspace: " + err.Error(), true
	case errors.Is(err, workspace.ErrNoOverlay):
		return err.Error(), true
	}
	return "", false
}

// setupFailure is a setup that did not complete: invalid when one of its
// commands failed (the task's fault), else what ended the attempt (the
// task's timeout).
type setupFailure struct {
	rollout.Failure
	invalid bool
}

func (f *setupFailure) Error() string { return f.Message }

// runSetup runs the setup commands in w.ws, each a step (w.steps). The
// error is the runtime's (a jail that did not launch).
func (w *workspaceEnv) runSetup(ctx context.Context) (*setupFailure, error) {
	for i, cmd := range w.c.Setup {
		step, ok := w.shell(ctx, core.CodeAction{Action: core.CodeActionBash, Command: cmd}, purposeSetup, w.budget.Remaining())
		if w.jailErr != nil {
			return nil, w.jailErr
		}
		if !ok {
			return &setupFailure{Failure: *w.end()}, nil
		}
		if !step.Success {
			return &setupFailure{invalid: true, Failure: rollout.Failure{Type: core.ErrSetup,
				Message: fmt.Sprintf("setup command %d (%s) failed: %s", i+1, clip(cmd, 200), step.ErrorMessage)}}, nil
		}
	}
	return nil, nil
}

// startPrepared opens the attempt's workspace over the task's post-setup
// snapshot (workspace.Manager.OpenPrepared): the setup runs once per
// runtime for the k attempts, in a workspace of its own. Every attempt
// records the setup's steps, marked action_params.snapshot (the key) and,
// on the attempts that did not run it, from_snapshot.
func (w *workspaceEnv) startPrepared(ctx context.Context, seed workspace.Seed, st rollout.Start, invalid func(core.ErrorType, string) (rollout.Start, error)) (rollout.Start, error) {
	key := workspace.SnapshotKey(w.task.TaskID, seed, w.c.Setup)
	p, err := w.a.Workspaces.OpenPrepared(ctx, key, seed, func(ctx context.Context, ws *workspace.Workspace) (any, error) {
		w.ws = ws
		defer func() { w.ws = nil }()
		failed, err := w.runSetup(ctx)
		steps := w.steps
		w.steps = nil
		if err != nil {
			return steps, err
		}
		if failed != nil {
			return steps, failed
		}
		return steps, nil
	})
	recorded, _ := p.Record.([]core.ExecutionStep)
	steps := make([]core.ExecutionStep, len(recorded))
	for i, s := range recorded {
		params := make(map[string]any, len(s.ActionParams)+2)
		for k, v := range s.ActionParams {
			params[k] = v
		}
		params["snapshot"] = key
		if p.Reused {
			params["from_snapshot"] = true
		}
		s.ActionParams = params
		steps[i] = s
	}
	// The setup ran in its own environment: its state is not this attempt's.
	w.ended, w.endedMsg, w.jailErr = "", "", nil
	st.Steps = steps
	var failed *setupFailure
	if why, ok := seedInvalid(err); ok {
		return invalid(core.ErrSystem, why)
	}
	switch {
	case errors.As(err, &failed) && failed.invalid:
		st.Invalid, st.End = true, &failed.Failure
		return st, nil
	case errors.As(err, &failed), err != nil && ctx.Err() != nil:
		st.End = w.timedOut()
		return st, nil
	case err != nil:
		return st, fmt.Errorf("open workspace over the setup's snapshot: %w", err)
	}
	w.ws = p.Workspace
	w.started = true
	return st, nil
}

// timedOut ends the attempt at the budget's end.
func (w *workspaceEnv) timedOut() *rollout.Failure {
	w.ended, w.endedMsg = core.ErrTimeout, fmt.Sprintf("the task's timeout (%d s) passed", w.budget.Seconds())
	return w.end()
}

// end is what ended the attempt; nil when nothing did.
func (w *workspaceEnv) end() *rollout.Failure {
	if w.ended == "" {
		return nil
	}
	return &rollout.Failure{Type: w.ended, Message: w.endedMsg}
}

// stepTimeout is the timeout of an agent's bash or python step: its own
// (seconds) or SANDBOX_RUN_TIMEOUT, cut to what is left of the task.
func (w *workspaceEnv) stepTimeout(a core.CodeAction) time.Duration {
	t := w.a.Limits.Wall
	if a.Timeout != nil {
		t = time.Duration(*a.Timeout) * time.Second
	}
	if t <= 0 {
		t = workspace.DefaultStepTimeout
	}
	return w.budget.StepTimeout(t)
}

// Step performs one action (core.CodeAction, or a model's call decoded
// with the rules of a task's actions) as one step; a text answer is
// accepted (the attempt ends and test_command decides).
func (w *workspaceEnv) Step(ctx context.Context, act rollout.Action) (rollout.Result, error) {
	var res rollout.Result
	var a core.CodeAction
	switch {
	case act.Answer != nil:
		if w.answer == nil && *act.Answer != "" {
			ans := *act.Answer
			w.answer = &ans
		}
		res.Done = true
		return res, nil
	case act.Call != nil:
		var raw json.RawMessage
		err := llm.ParseArguments(*act.Call, &raw)
		if err == nil {
			a, err = core.ParseCodeAction(act.Call.Function.Name, raw)
		}
		if err != nil {
			res.Observation.Text = "error: " + err.Error()
			return res, nil
		}
	default:
		var ok bool
		if a, ok = act.Input.(core.CodeAction); !ok {
			return res, fmt.Errorf("workspace environment: action %T is not a core.CodeAction", act.Input)
		}
	}
	res.Observation.Text, res.Done = w.do(ctx, a)
	res.Steps, w.steps = w.steps, nil
	if w.jailErr != nil {
		return res, w.jailErr
	}
	res.End = w.end()
	res.Done = res.Done || res.End != nil
	res.Finished = w.finished
	return res, nil
}

// Close closes the workspace.
func (w *workspaceEnv) Close() error {
	w.im.close()
	if w.ws == nil {
		return nil
	}
	if err := w.ws.Close(); err != nil {
		return fmt.Errorf("close workspace: %w", err)
	}
	return nil
}

// Evaluate takes the diff and, when the attempt got that far, runs
// test_command: success only when test_command ran and passed (or, without
// one, when the attempt ended normally).
func (w *workspaceEnv) Evaluate(ctx context.Context, end *rollout.Failure) (rollout.Evaluation, error) {
	ev := rollout.Evaluation{Checked: w.c.TestCommand != "", Metadata: core.Metadata{}}
	if !w.started {
		return ev, nil // ended before the agent started: no diff, no check
	}
	ev.Total = w.c.Checks()
	if w.answer != nil {
		ev.FinalResult = *w.answer
		ev.Metadata[core.MetaAnswer] = *w.answer
	}
	diffOK := w.recordDiff(ctx, ev.Metadata)
	if end != nil {
		return ev, nil
	}
	if !diffOK {
		// The record of what the agent did is not whole: whatever the
		// tests say, this is no example of a success.
		why, _ := ev.Metadata[core.MetaWorkspaceDiffIncomplete].(string)
		ev.Failure = &rollout.Failure{Type: core.ErrSystem, Message: "the workspace diff could not be taken completely: " + clip(orString(why, "it failed"), 300)}
		return ev, nil
	}
	if w.c.TestCommand == "" {
		return ev, nil
	}
	ok, msg := w.runTests(ctx)
	ev.Steps, w.steps = w.steps, nil
	if w.testOutput != nil {
		ev.Metadata[core.MetaTestOutput] = *w.testOutput
	}
	if w.jailErr != nil {
		return ev, w.jailErr
	}
	if w.ended != "" {
		ev.Failure = w.end()
		return ev, nil
	}
	ev.Verified, ev.Message, ev.Tampered = &ok, msg, w.tampered
	if ok {
		ev.Passed = 1
	}
	ev.Reward, ev.Rewards = w.reward, w.rewards
	return ev, nil
}

// recordDiff keeps the workspace's diff against its base (the state
// after setup), as text or, when its bytes are not UTF-8, in base64. It
// reports whether the diff is the whole change; when not, why is
// metadata.workspace_diff_incomplete.
func (w *workspaceEnv) recordDiff(ctx context.Context, md core.Metadata) bool {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diffTimeout)
	defer cancel()
	d, err := w.ws.Diff(dctx, diffBytes)
	if err != nil {
		w.a.Log.Warn("workspace diff failed", "task_id", w.task.TaskID, "err", err)
		md[core.MetaWorkspaceDiffIncomplete] = err.Error()
		return false
	}
	if utf8.ValidString(d.Patch) {
		md[core.MetaWorkspaceDiff] = d.Patch
	} else {
		md[core.MetaWorkspaceDiffBase64] = base64.StdEncoding.EncodeToString([]byte(d.Patch))
	}
	if d.Truncated {
		md[core.MetaWorkspaceDiffTruncated] = true
	}
	if d.Incomplete != "" {
		md[core.MetaWorkspaceDiffIncomplete] = d.Incomplete
		return false
	}
	return true
}

// runTests runs test_command (with what is left of the task's time) as the
// verify step and returns its verdict: Workspace.Verify, a fresh jail and
// shell that none of the agent's state reaches, the hidden test_files at
// /tests, and a pass only on the evidence that the check ran to its end.
func (w *workspaceEnv) runTests(ctx context.Context) (bool, string) {
	a := core.CodeAction{Action: core.CodeActionBash, Command: w.c.TestCommand}
	params := toolParams(a)
	params["purpose"] = purposeVerify
	started := time.Now()
	timeout := w.budget.Remaining()
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
	w.record(step)
	w.testOutput = &step.Observation
	return v.Passed, msg
}

// do performs one action as one step and returns the observation for the
// model; done is true after finish.
func (w *workspaceEnv) do(ctx context.Context, a core.CodeAction) (string, bool) {
	if ctx.Err() != nil {
		w.timedOut()
		return "error: " + w.endedMsg, true
	}
	switch a.Action {
	case core.CodeActionBash, core.CodeActionPython:
		step, ok := w.shell(ctx, a, purposeRun, w.stepTimeout(a))
		if !ok {
			return "error: " + w.endedMsg, true
		}
		return step.Observation, false
	case core.CodeActionFinish:
		w.finished, w.answer = true, a.Answer
		w.record(core.ExecutionStep{
			ActionType: core.ActionToolCall, ActionParams: toolParams(a), Observation: "finished", Success: true,
			Timestamp: core.UnixSeconds(time.Now()),
		})
		return "finished", true
	}
	return w.fileTool(a), w.ended != "" || w.jailErr != nil
}

// fileTool performs read_file, write_file or edit_file as a tool_call step.
func (w *workspaceEnv) fileTool(a core.CodeAction) string {
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
	w.record(step)
	return step.Observation
}

// shell runs a bash or python action as a code_execution step. setup runs
// in a fresh shell (Exec): the agent's saved exports and working directory
// neither reach it nor come from it (test_command runs in runTests). ok is
// false when the attempt cannot go on: the jail failed (jailErr) or the
// task's time ran out (ended).
func (w *workspaceEnv) shell(ctx context.Context, a core.CodeAction, purpose string, timeout time.Duration) (core.ExecutionStep, bool) {
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
	w.record(step)
	return step, w.ended == ""
}

// stepFailed records a step whose jail did not run (err): the task's time
// ran out (ended) or the runtime failed (jailErr, the task is retried).
func (w *workspaceEnv) stepFailed(ctx context.Context, params map[string]any, started time.Time, err error) core.ExecutionStep {
	step := core.ExecutionStep{
		ActionType: core.ActionCodeExecution, ActionParams: params, ErrorMessage: err.Error(),
		Timestamp: core.UnixSeconds(started), Duration: time.Since(started).Seconds(),
	}
	if ctx.Err() != nil {
		step.ErrorType = core.ErrTimeout
		w.timedOut()
	} else {
		w.a.Metrics.SandboxJailFailures.Inc()
		step.ErrorType = core.ErrSystem
		w.jailErr = err
		w.endedMsg = "the runtime could not run the step"
	}
	w.record(step)
	return step
}

// toolParams is a step's action_params: the tool and its arguments.
func toolParams(a core.CodeAction) map[string]any {
	return map[string]any{"tool": a.Action, "arguments": a.Arguments()}
}

// record keeps a step of the call in progress.
func (w *workspaceEnv) record(s core.ExecutionStep) { w.steps = append(w.steps, s) }

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
