package codeagent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// Program is the program environment's typed action: run a Python
// program (the task's constraints.code, a cached program, a rule's).
type Program struct {
	Code string
}

// programEnv is the environment of a single program's attempt: each action
// is a jailed run of a program, verified by the task's expected output and
// tests (one jailed run of the test harness yields both the program's run
// and the tests' verdict).
type programEnv struct {
	a      *Agent
	task   core.TaskSpec
	c      Constraints
	im     image
	budget rollout.Budget
	// steps are the records of the action in progress.
	steps []core.ExecutionStep
	last  core.ExecutionStep // the last step recorded
	// lastProgram is the last program that ran cleanly, lastResult its
	// result.
	lastProgram string
	lastResult  *sandbox.Result
	verified    *bool
	verifyMsg   string
	// passedChecks is how many of the verifier's checks the verified
	// program passed (the reward's numerator).
	passedChecks int
	verifiedFor  string // the program verified last
	// tampered is the event the harness's guard stopped the last
	// verification at ("" when it did not); flags are what it saw of the
	// last passing one (see harnessResult).
	tampered string
	flags    []string
	// feedback is what the model is told of a failed verification: never
	// the text or output of a hidden check (issue 23 §4).
	feedback string
	// answer is the model's last text answer.
	answer string
	// jailErr is a failure of the jail (not of ctx's end): the task is
	// retried.
	jailErr error
}

var _ rollout.Cacheable = (*programEnv)(nil)

// Start tells the policy the task.
func (r *programEnv) Start(_ context.Context, opts rollout.StartOptions) (rollout.Start, error) {
	r.budget = opts.Budget
	user := prompt.CodeUser(prompt.CodeTask{Description: r.task.Description, Stdin: r.c.Stdin, Checked: r.c.HasVerifier(), VisibleTests: r.c.VisibleTests})
	return rollout.Start{
		Result: rollout.Result{Observation: rollout.Observation{Text: user}, Metadata: r.im.metadata()},
		Space:  rollout.ActionSpace{Instructions: prompt.CodeSystem, Tools: []llm.Tool{prompt.RunPython}},
	}, nil
}

// Step runs a program (Program, or a model's run_python call), or takes a
// model's answer: accepted once the last clean run passes the checks.
func (r *programEnv) Step(ctx context.Context, a rollout.Action) (rollout.Result, error) {
	var res rollout.Result
	switch {
	case a.Answer != nil:
		res.Observation.Text, res.Done = r.takeAnswer(ctx, *a.Answer)
	case a.Call != nil:
		res.Observation.Text = r.call(ctx, *a.Call)
	default:
		p, ok := a.Input.(Program)
		if !ok {
			return res, fmt.Errorf("program environment: action %T is not a Program", a.Input)
		}
		r.runProgram(ctx, p.Code)
	}
	res.Steps, r.steps = r.steps, nil
	if r.jailErr != nil {
		return res, r.jailErr
	}
	return res, nil
}

// call runs a model's run_python call and returns its observation.
func (r *programEnv) call(ctx context.Context, call llm.ToolCall) string {
	var args struct {
		Code string `json:"code"`
	}
	if err := llm.ParseArguments(call, &args); err != nil || args.Code == "" {
		if err == nil {
			err = fmt.Errorf("argument \"code\" is empty")
		}
		return "error: " + err.Error()
	}
	res, step := r.execute(ctx, args.Code, purposeRun)
	if res == nil {
		return "error: " + step.ErrorMessage
	}
	if res.OK() {
		r.lastProgram, r.lastResult = args.Code, res
	}
	return step.Observation
}

// takeAnswer takes a model's text answer: feedback to go on, or done.
func (r *programEnv) takeAnswer(ctx context.Context, answer string) (feedback string, done bool) {
	r.answer = answer
	if r.lastResult == nil {
		if r.task.TaskType == core.TaskReasoning {
			return "", true
		}
		return "No program has run successfully yet. Write the program and run it with run_python.", false
	}
	r.verify(ctx)
	if r.verified != nil && !*r.verified {
		return "Verification failed: " + r.feedback + ". Fix the program and run it again with run_python.", false
	}
	return "", true
}

// CacheKey is the task's template cache key: its check is part of it, so
// a program is replayed only for the check it passed.
func (r *programEnv) CacheKey() string {
	return templatecache.Key(string(r.task.TaskType), r.task.Description, r.c.CheckDigest())
}

// Replay is a cached program's run.
func (r *programEnv) Replay(e templatecache.Entry) ([]rollout.Action, bool) {
	if e.Kind != templatecache.KindProgram {
		return nil, false
	}
	return []rollout.Action{{Input: Program{Code: e.Program}}}, true
}

// Entry caches the program that succeeded.
func (r *programEnv) Entry() (templatecache.Entry, bool) {
	if r.lastProgram == "" {
		return templatecache.Entry{}, false
	}
	return templatecache.Entry{Kind: templatecache.KindProgram, Program: r.lastProgram}, true
}

// programRules is the blueprint's program for a description, when a rule
// matches.
func programRules(description string) rollout.Policy {
	program, rule := ruleProgram(description)
	if program == "" {
		return rollout.NoActions(rollout.Failure{Type: core.ErrNoModel, Message: "no LLM is configured (set LLM_BASE_URL) and no rule matches this task; " +
			"give it a program in constraints.code or configure an OpenAI-compatible LLM"})
	}
	return &rollout.Replay{From: rollout.SourceRules, Actions: []rollout.Action{{Input: Program{Code: program}}}, MaxSteps: 1, Rule: rule}
}

// Close releases the environment image.
func (r *programEnv) Close() error {
	r.im.close()
	return nil
}

// Purposes of a code step (action_params.purpose): a run of the program,
// or the platform's run of the task's tests (not a model action).
const (
	purposeRun    = "run"
	purposeVerify = "verify"
)

// record keeps a step of the action in progress.
func (r *programEnv) record(s core.ExecutionStep) {
	r.steps = append(r.steps, s)
	r.last = s
}

// runProgram executes a program that no model chose between runs
// (scripted, cached, rules) as a step and verifies it. With tests, one
// jailed run of the harness yields both the program's own run and the
// tests' verdict.
func (r *programEnv) runProgram(ctx context.Context, program string) {
	if r.c.AllTests() != "" && r.runWithTests(ctx, program) {
		return
	}
	res, _ := r.execute(ctx, program, purposeRun)
	if res == nil || !res.OK() {
		return
	}
	r.lastProgram, r.lastResult = program, res
	r.verify(ctx)
}

// runWithTests runs program and its tests in one jail and records the
// program's run and, when it ran cleanly, the verification, as two steps.
// It reports false, having recorded nothing, when the run cannot tell the
// two apart (truncated output, a process that exited 0 before the
// boundary) or the tests hit a limit that their own run would not share
// with the program's: then the caller runs them separately.
func (r *programEnv) runWithTests(ctx context.Context, program string) bool {
	lim := r.limits()
	h, req := newHarnessRun(r.a.harness(ctx, r.im.img, r.im.id()), program, r.c.AllTests(), r.c.Stdin, lim)
	started := time.Now()
	res, err := r.jail(ctx, req)
	if err != nil {
		r.addJailFailure(r.runParams(program, purposeRun), err, started)
		return true
	}
	hr := h.read(res, lim)
	r.tampered, r.flags = hr.tampered, nil
	if !hr.split && hr.tampered != "" {
		// The guard stopped the program's run.
		r.addRunStep(r.runParams(program, purposeRun), hr.tests, started)
		return true
	}
	if !hr.split {
		if res.OK() || res.StdoutTruncated || res.StderrTruncated {
			return false
		}
		// The process died during the program (crash, limit, os._exit
		// with a failure status): that is the program's run.
		r.addRunStep(r.runParams(program, purposeRun), res, started)
		return true
	}
	r.addRunStep(r.runParams(program, purposeRun), hr.program, started)
	if !hr.program.OK() {
		return true
	}
	r.lastProgram, r.lastResult = program, &hr.program
	r.verifiedFor = program
	outOK, outMsg := r.checkOutput()
	var testsOK bool
	var testsMsg string
	if !hr.passed && !hr.programExited && (hr.tests.ErrorType == core.ErrTimeout || hr.tests.ErrorType == core.ErrOutputLimit) {
		// The tests had what the program left of the limits; alone they
		// get their own, as they always have.
		testsOK, testsMsg = r.verifyTests(ctx)
	} else {
		testsOK, testsMsg = r.addVerifyStep(res.ExitCode, hr, started.Add(hr.program.Wall))
	}
	r.settle(outOK, outMsg, true, testsOK, testsMsg)
	return true
}

// limits are the jail limits of one run: the runtime's, with what the
// task's resources ask, the wall clock cut to what is left of the
// attempt's budget.
func (r *programEnv) limits() sandbox.Limits {
	lim := r.a.Limits.For(r.c.Resources)
	lim.Wall = r.budget.StepTimeout(lim.Wall)
	return lim
}

// jail runs req; a jail failure is counted and, unless ctx ended, kept as
// the task's system error.
func (r *programEnv) jail(ctx context.Context, req sandbox.Request) (sandbox.Result, error) {
	req.Image = r.im.img
	res, err := r.a.Jail.Run(ctx, req)
	if err != nil {
		r.a.Metrics.SandboxJailFailures.Inc()
		if ctx.Err() == nil {
			r.jailErr = err
		}
		return res, err
	}
	r.a.Metrics.SandboxExecDuration.Observe(res.Wall.Seconds())
	return res, nil
}

func (r *programEnv) runParams(code, purpose string) map[string]any {
	params := map[string]any{"code": code, "language": "python", "purpose": purpose}
	if r.c.Stdin != "" {
		params["stdin"] = r.c.Stdin
	}
	return params
}

// execute runs code in the jail and records it as a step. The result is
// nil when the jail failed.
func (r *programEnv) execute(ctx context.Context, code, purpose string) (*sandbox.Result, core.ExecutionStep) {
	params := r.runParams(code, purpose)
	started := time.Now()
	res, err := r.jail(ctx, sandbox.Request{Code: code, Stdin: []byte(r.c.Stdin), Limits: r.limits()})
	if err != nil {
		return nil, r.addJailFailure(params, err, started)
	}
	return &res, r.addRunStep(params, res, started)
}

func (r *programEnv) addJailFailure(params map[string]any, err error, started time.Time) core.ExecutionStep {
	step := core.ExecutionStep{
		ActionType: core.ActionCodeExecution, ActionParams: params,
		ErrorType: core.ErrSystem, ErrorMessage: err.Error(),
		Timestamp: core.UnixSeconds(started), Duration: time.Since(started).Seconds(),
	}
	r.record(step)
	return step
}

func (r *programEnv) addRunStep(params map[string]any, res sandbox.Result, started time.Time) core.ExecutionStep {
	params["exit_code"] = res.ExitCode
	step := core.ExecutionStep{
		ActionType:   core.ActionCodeExecution,
		ActionParams: params,
		Observation:  observation(res),
		Success:      res.OK(),
		ErrorType:    res.ErrorType,
		ErrorMessage: res.ErrorMessage,
		Timestamp:    core.UnixSeconds(started),
		Duration:     res.Wall.Seconds(),
	}
	r.record(step)
	return step
}

// addVerifyStep records the tests' part of a harness run as the verify
// step and returns its verdict.
func (r *programEnv) addVerifyStep(exitCode int, hr harnessResult, started time.Time) (bool, string) {
	ok, et, msg := hr.verdict()
	r.tampered, r.flags = hr.tampered, nil
	if ok {
		r.flags = hr.flags
	}
	params := r.runParams(r.verifiedCode(), purposeVerify)
	params["exit_code"] = exitCode
	r.record(core.ExecutionStep{
		ActionType:   core.ActionCodeExecution,
		ActionParams: params,
		Observation:  observation(hr.tests),
		Success:      ok,
		ErrorType:    et,
		ErrorMessage: msg,
		Timestamp:    core.UnixSeconds(started),
		Duration:     hr.tests.Wall.Seconds(),
	})
	return ok, msg
}

// verifiedCode is what a verify step runs, as its action_params.code: the
// program, then the tests (the harness around them is the platform's).
func (r *programEnv) verifiedCode() string {
	return r.lastProgram + "\n\n# --- tests (constraints.visible_tests, then constraints.tests) ---\n" + r.c.AllTests() + "\n"
}

// verify checks the last clean run against the task's verifier: the
// expected output, and the tests in a run of their own. Every check runs,
// so that the reward counts each.
func (r *programEnv) verify(ctx context.Context) {
	if !r.c.HasVerifier() {
		r.verified, r.verifyMsg, r.passedChecks = nil, "", 0
		return
	}
	r.verifiedFor = r.lastProgram
	outOK, outMsg := r.checkOutput()
	if r.c.AllTests() == "" {
		r.settle(outOK, outMsg, false, false, "")
		return
	}
	testsOK, testsMsg := r.verifyTests(ctx)
	r.settle(outOK, outMsg, true, testsOK, testsMsg)
}

// settle records the verification: passed when every check passed, the
// first failure's message, what the model may be told of it, and how many
// checks passed.
func (r *programEnv) settle(outOK bool, outMsg string, testsRan, testsOK bool, testsMsg string) {
	ok, msg, passed := outOK, outMsg, 0
	feedback := ""
	if !outOK {
		// expected_output is not in the prompt: not quoted.
		feedback = "the program's output does not match the expected output"
	}
	if outOK && r.c.ExpectedOutput != nil {
		passed++
	}
	if testsRan {
		if testsOK {
			passed++
		} else if ok {
			msg, feedback = testsMsg, r.testsFeedback(testsMsg)
		}
		ok = ok && testsOK
	}
	r.verified, r.verifyMsg, r.passedChecks, r.feedback = &ok, msg, passed, feedback
}

// testsFeedback is what the model is told of failed tests: their message
// when every test is one it was shown (visible_tests), otherwise only that
// they failed. Hidden tests' text and output (a traceback, what the
// program printed while they ran) are never quoted.
func (r *programEnv) testsFeedback(msg string) string {
	switch {
	case r.tampered != "":
		return tamperedMessage(r.tampered)
	case r.c.Tests == "":
		return msg
	case r.c.VisibleTests != "":
		return "the tests failed (the tests shown in the task and others that are not shown)"
	default:
		return "the tests failed (they are not shown)"
	}
}

// checkOutput compares the last clean run's stdout with expected_output.
func (r *programEnv) checkOutput() (bool, string) {
	if r.c.ExpectedOutput == nil {
		return true, ""
	}
	got, want := normalizeOutput(r.lastResult.Stdout), normalizeOutput(*r.c.ExpectedOutput)
	if got != want {
		return false, fmt.Sprintf("output %q does not match the expected output %q", clip(got, 200), clip(want, 200))
	}
	return true, ""
}

// verifyTests runs the last clean program with the tests under the harness,
// records the verify step and returns its verdict.
func (r *programEnv) verifyTests(ctx context.Context) (bool, string) {
	lim := r.limits()
	h, req := newHarnessRun(r.a.harness(ctx, r.im.img, r.im.id()), r.lastProgram, r.c.AllTests(), r.c.Stdin, lim)
	started := time.Now()
	res, err := r.jail(ctx, req)
	if err != nil {
		params := r.runParams(r.verifiedCode(), purposeVerify)
		step := r.addJailFailure(params, err, started)
		return false, "the tests could not run: " + step.ErrorMessage
	}
	return r.addVerifyStep(res.ExitCode, h.read(res, lim), started)
}

// answerOnly takes a text answer as the result of a reasoning task.
func (r *programEnv) answerOnly(answer string) {
	if r.c.ExpectedOutput != nil {
		ok := normalizeOutput(answer) == normalizeOutput(*r.c.ExpectedOutput)
		var msg string
		if !ok {
			msg = fmt.Sprintf("answer %q does not match the expected output", clip(answer, 200))
		}
		r.settle(ok, msg, false, false, "")
	}
	if r.c.AllTests() != "" {
		// Tests check a program; a text answer cannot pass them.
		outOK := r.verified == nil || *r.verified
		const msg = "the task has tests, which need a program; it was answered in text without one"
		r.settle(outOK, r.verifyMsg, true, false, msg)
		if outOK {
			r.feedback = msg
		}
	}
	r.lastResult = &sandbox.Result{Stdout: answer}
}

// Evaluate settles the verification of what ran and says what the attempt
// produced. An attempt that end ended has no result.
func (r *programEnv) Evaluate(ctx context.Context, end *rollout.Failure) (rollout.Evaluation, error) {
	ev := rollout.Evaluation{Checked: r.c.HasVerifier(), Total: r.c.Checks()}
	switch {
	case end != nil:
		r.lastResult = nil // the task did not complete
	case r.task.TaskType == core.TaskReasoning && r.lastResult == nil && r.answer != "":
		// A reasoning task may be answered without code.
		r.answerOnly(r.answer)
	case r.lastResult != nil && r.c.HasVerifier() && r.verifiedFor != r.lastProgram:
		// The actions ended (max_steps) after a run the model never
		// submitted.
		r.verify(ctx)
		if r.jailErr != nil {
			return ev, r.jailErr
		}
	}
	ev.Steps, r.steps = r.steps, nil
	ev.Metadata = core.Metadata{}
	if r.answer != "" {
		ev.Metadata[core.MetaAnswer] = r.answer
	}
	if r.lastProgram != "" {
		ev.Metadata[core.MetaCodeLength] = len(r.lastProgram)
	}
	ev.Verified, ev.Message, ev.Feedback = r.verified, r.verifyMsg, r.feedback
	ev.Tampered = r.tampered != "" && (r.lastResult == nil || r.verified != nil && !*r.verified)
	if r.lastResult == nil {
		// No clean run: the last step's error is the task's.
		ev.Failure = &rollout.Failure{Type: core.ErrWrongAnswer, Message: "no program was run"}
		if r.last.ActionType != "" {
			ev.Failure = &rollout.Failure{Type: r.last.ErrorType, Message: r.last.ErrorMessage}
		}
		return ev, nil
	}
	ev.FinalResult = strings.TrimRight(r.lastResult.Stdout, "\n")
	if r.verified != nil {
		ev.Passed = r.passedChecks
		if len(r.flags) > 0 {
			ev.Metadata[core.MetaFlags] = flagNotes(r.flags)
		}
	}
	return ev, nil
}

// observation renders a run for the trajectory and the model.
func observation(res sandbox.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "exit_code: %d", res.ExitCode)
	if res.Signal != "" {
		fmt.Fprintf(&b, " (%s)", res.Signal)
	}
	fmt.Fprintf(&b, "\nduration: %.3fs\n", res.Wall.Seconds())
	if res.ErrorType != core.ErrNone {
		fmt.Fprintf(&b, "error: %s: %s\n", res.ErrorType, res.ErrorMessage)
	}
	b.WriteString("stdout:\n")
	b.WriteString(res.Stdout)
	if res.StdoutTruncated {
		b.WriteString("\n[stdout truncated]")
	}
	if res.Stderr != "" {
		b.WriteString("\nstderr:\n")
		b.WriteString(res.Stderr)
		if res.StderrTruncated {
			b.WriteString("\n[stderr truncated]")
		}
	}
	return b.String()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
