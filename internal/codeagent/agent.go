// Package codeagent executes code and reasoning tasks: it obtains a Python
// program (scripted in the task, from the template cache, from an LLM, or
// from the blueprint's rules), runs it in the sandbox, verifies the outcome,
// and records every execution as a step of the trajectory.
package codeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentdataplatform/adp/internal/agent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// Agent is the sandbox runtime's worker.Executor.
type Agent struct {
	Jail   sandbox.Jail
	Limits sandbox.Limits
	// Workspaces opens the workspaces of workspace tasks (issue 16); nil
	// when the runtime has none.
	Workspaces *workspace.Manager
	// LLM generates programs; nil means no LLM is configured.
	LLM *llm.Client
	// Cache is the template cache; nil disables it.
	Cache   *templatecache.Cache
	Metrics *metrics.Set
	Log     *slog.Logger
	// Environments obtains the images tasks name as their environment
	// (an *imagestore.Store); nil when the runtime has no image store.
	Environments Environments

	harnessMu sync.Mutex
	harnesses map[string]harness // by interpreter: "" (the host's) or an image id
}

// Environments obtains a task's environment: imagestore.Store.Get.
type Environments interface {
	Get(ctx context.Context, env string) (*imagestore.Handle, error)
}

// harness is the test harness for the interpreter of img (nil: the
// host's; key is the image's id): harnessPy compiled by that interpreter,
// done at the first task with tests that runs on it, or harnessPy itself
// when that fails (logged; the verdicts are the same, a run costs 0.25 ms
// more of CPU).
func (a *Agent) harness(ctx context.Context, img *sandbox.Image, key string) harness {
	a.harnessMu.Lock()
	defer a.harnessMu.Unlock()
	if h, ok := a.harnesses[key]; ok {
		return h
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	h, err := compileHarness(ctx, a.Jail, a.Limits, img)
	if err != nil {
		a.Log.Warn("running the test harness from source", "image", key, "err", err)
		h = sourceHarness
	}
	if a.harnesses == nil {
		a.harnesses = map[string]harness{}
	}
	a.harnesses[key] = h
	return h
}

// ErrJail is wrapped by Execute's error when the jail itself failed: a
// system error, retried on another delivery.
var ErrJail = errors.New("jail failed")

// run is one task's state.
type run struct {
	a     *Agent
	task  core.TaskSpec
	c     Constraints
	tr    *core.Trajectory
	start time.Time
	// last is the last program that ran cleanly, and its result.
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
	jailErr  error
	// image is the task's environment (nil: the host's /usr), imageID
	// its id.
	image   *sandbox.Image
	imageID string
}

// Execute runs task and returns its trajectory. The error is non-nil only
// for system failures (the jail could not launch).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	r := &run{a: a, task: task, tr: core.NewTrajectory(task, ""), start: time.Now()}
	var err error
	if r.c, err = task.Code(); err != nil {
		r.tr.Fail(core.ErrSystem, "invalid constraints: "+err.Error())
		r.tr.ExitReason = core.ExitInvalidTask
		return r.finish(), nil
	}
	if r.c.Environment != "" {
		h, err := a.environment(ctx, r.c.Environment)
		if errors.Is(err, errNoEnvironment) {
			r.tr.Fail(core.ErrSystem, err.Error())
			r.tr.ExitReason = core.ExitInvalidTask
			return r.finish(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("task %s: %w: %w", task.TaskID, ErrJail, err)
		}
		defer h.Close()
		r.image = &sandbox.Image{Root: h.Root, Env: h.Config.Env, WorkingDir: h.Config.WorkingDir, User: h.Config.User}
		r.imageID = h.ID
		r.tr.Metadata[core.MetaEnvironmentImage] = h.ID
		if err := sandbox.CheckImage(r.image); err != nil {
			r.tr.Fail(core.ErrSystem, fmt.Sprintf("environment %s: %v", r.c.Environment, err))
			r.tr.ExitReason = core.ExitInvalidTask
			return r.finish(), nil
		}
	}
	if r.c.IsWorkspace() {
		return a.executeWorkspace(ctx, task, r.c, r.tr, r.start)
	}
	deadline := time.Now().Add(time.Duration(task.Timeout) * time.Second)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	x := agent.Executor{Cache: a.Cache, HasModel: a.LLM != nil, Metrics: a.Metrics, Log: a.Log}
	x.Run(ctx, r.tr, task, r)
	if r.jailErr != nil {
		return nil, fmt.Errorf("task %s: %w: %w", task.TaskID, ErrJail, r.jailErr)
	}
	return r.finish(), nil
}

var _ agent.Task = (*run)(nil)

// errNoEnvironment: the task's environment cannot be had here for a
// reason of the task's (no such image) or of this runtime's settings (no
// image store): the task is invalid, retrying cannot help.
var errNoEnvironment = errors.New("environment")

// environment obtains a task's image. A failure that another try may
// mend (the registry unreachable) is returned as it is.
func (a *Agent) environment(ctx context.Context, env string) (*imagestore.Handle, error) {
	if a.Environments == nil {
		return nil, fmt.Errorf("%w %s: this runtime has no image store (set SANDBOX_IMAGE_STORE)", errNoEnvironment, env)
	}
	h, err := a.Environments.Get(ctx, env)
	if errors.Is(err, imagestore.ErrNoSuchImage) {
		return nil, fmt.Errorf("%w %s: %w", errNoEnvironment, env, err)
	}
	if err != nil {
		return nil, fmt.Errorf("environment %s: %w", env, err)
	}
	return h, nil
}

// Scripted runs constraints.code.
func (r *run) Scripted(ctx context.Context) bool {
	if r.c.Code == "" {
		return false
	}
	r.runProgram(ctx, r.c.Code)
	return true
}

// CacheKey is the task's template cache key: its check is part of it, so
// a program is replayed only for the check it passed.
func (r *run) CacheKey() string {
	return templatecache.Key(string(r.task.TaskType), r.task.Description, r.c.CheckDigest())
}

// Replay runs a cached program.
func (r *run) Replay(ctx context.Context, e templatecache.Entry) bool {
	if e.Kind != templatecache.KindProgram {
		return false
	}
	r.runProgram(ctx, e.Program)
	return true
}

// Model runs the LLM loop.
func (r *run) Model(ctx context.Context) { r.withLLM(ctx) }

// Rules runs the blueprint's program for the description, if one matches.
func (r *run) Rules(ctx context.Context) bool {
	program, rule := ruleProgram(r.task.Description)
	if program == "" {
		r.tr.Fail(core.ErrNoModel, "no LLM is configured (set LLM_BASE_URL) and no rule matches this task; "+
			"give it a program in constraints.code or configure an OpenAI-compatible LLM")
		return false
	}
	r.tr.Metadata[core.MetaRule] = rule
	r.runProgram(ctx, program)
	return true
}

// Entry caches the program that succeeded (the executor stores no flagged
// success).
func (r *run) Entry() (templatecache.Entry, bool) {
	if r.lastProgram == "" {
		return templatecache.Entry{}, false
	}
	return templatecache.Entry{Kind: templatecache.KindProgram, Program: r.lastProgram}, true
}

// Purposes of a code step (action_params.purpose): a run of the program,
// or the platform's run of the task's tests (not a model action).
const (
	purposeRun    = "run"
	purposeVerify = "verify"
)

// runProgram executes a program that no model chose between runs
// (scripted, cached, rules) as a step and verifies it. With tests, one
// jailed run of the harness yields both the program's own run and the
// tests' verdict.
func (r *run) runProgram(ctx context.Context, program string) {
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
func (r *run) runWithTests(ctx context.Context, program string) bool {
	lim := r.limits(ctx)
	h, req := newHarnessRun(r.a.harness(ctx, r.image, r.imageID), program, r.c.AllTests(), r.c.Stdin, lim)
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

// limits are the jail limits of one run: the runtime's, with the wall
// clock cut to what is left of the task's deadline.
func (r *run) limits(ctx context.Context) sandbox.Limits {
	lim := r.a.Limits
	if dl, ok := ctx.Deadline(); ok {
		if rem := time.Until(dl); rem < lim.Wall || lim.Wall == 0 {
			lim.Wall = max(rem, 100*time.Millisecond)
		}
	}
	return lim
}

// jail runs req; a jail failure is counted and, unless ctx ended, kept as
// the task's system error.
func (r *run) jail(ctx context.Context, req sandbox.Request) (sandbox.Result, error) {
	req.Image = r.image
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

func (r *run) runParams(code, purpose string) map[string]any {
	params := map[string]any{"code": code, "language": "python", "purpose": purpose}
	if r.c.Stdin != "" {
		params["stdin"] = r.c.Stdin
	}
	return params
}

// execute runs code in the jail and records it as a step. The result is
// nil when the jail failed.
func (r *run) execute(ctx context.Context, code, purpose string) (*sandbox.Result, core.ExecutionStep) {
	params := r.runParams(code, purpose)
	started := time.Now()
	res, err := r.jail(ctx, sandbox.Request{Code: code, Stdin: []byte(r.c.Stdin), Limits: r.limits(ctx)})
	if err != nil {
		return nil, r.addJailFailure(params, err, started)
	}
	return &res, r.addRunStep(params, res, started)
}

func (r *run) addJailFailure(params map[string]any, err error, started time.Time) core.ExecutionStep {
	step := core.ExecutionStep{
		ActionType: core.ActionCodeExecution, ActionParams: params,
		ErrorType: core.ErrSystem, ErrorMessage: err.Error(),
		Timestamp: core.UnixSeconds(started), Duration: time.Since(started).Seconds(),
	}
	r.tr.AddStep(step)
	return step
}

func (r *run) addRunStep(params map[string]any, res sandbox.Result, started time.Time) core.ExecutionStep {
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
	r.tr.AddStep(step)
	return step
}

// addVerifyStep records the tests' part of a harness run as the verify
// step and returns its verdict.
func (r *run) addVerifyStep(exitCode int, hr harnessResult, started time.Time) (bool, string) {
	ok, et, msg := hr.verdict()
	r.tampered, r.flags = hr.tampered, nil
	if ok {
		r.flags = hr.flags
	}
	params := r.runParams(r.verifiedCode(), purposeVerify)
	params["exit_code"] = exitCode
	r.tr.AddStep(core.ExecutionStep{
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
func (r *run) verifiedCode() string {
	return r.lastProgram + "\n\n# --- tests (constraints.visible_tests, then constraints.tests) ---\n" + r.c.AllTests() + "\n"
}

// verify checks the last clean run against the task's verifier: the
// expected output, and the tests in a run of their own. Every check runs,
// so that the reward counts each.
func (r *run) verify(ctx context.Context) {
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
func (r *run) settle(outOK bool, outMsg string, testsRan, testsOK bool, testsMsg string) {
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
func (r *run) testsFeedback(msg string) string {
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
func (r *run) checkOutput() (bool, string) {
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
func (r *run) verifyTests(ctx context.Context) (bool, string) {
	lim := r.limits(ctx)
	h, req := newHarnessRun(r.a.harness(ctx, r.image, r.imageID), r.lastProgram, r.c.AllTests(), r.c.Stdin, lim)
	started := time.Now()
	res, err := r.jail(ctx, req)
	if err != nil {
		params := r.runParams(r.verifiedCode(), purposeVerify)
		step := r.addJailFailure(params, err, started)
		return false, "the tests could not run: " + step.ErrorMessage
	}
	return r.addVerifyStep(res.ExitCode, h.read(res, lim), started)
}

// Conclude sets success and the error of the trajectory from the last
// step and the verification.
func (r *run) Conclude(context.Context) {
	tr := r.tr
	defer func() {
		passed := 0
		if r.lastResult != nil && r.verified != nil {
			passed = r.passedChecks
		}
		tr.SetReward(passed, r.c.Checks())
	}()
	if r.lastResult != nil {
		tr.FinalResult = strings.TrimRight(r.lastResult.Stdout, "\n")
	}
	if r.verified != nil {
		tr.Metadata[core.MetaVerified] = *r.verified
	} else {
		delete(tr.Metadata, core.MetaVerified)
	}
	if r.lastResult == nil {
		// No clean run: the last step's error is the task's.
		if n := len(tr.Steps); n > 0 {
			s := tr.Steps[n-1]
			tr.Fail(s.ErrorType, s.ErrorMessage)
			if r.tampered != "" {
				tr.ExitReason = core.ExitTampered
			}
		} else if tr.ErrorType == core.ErrNone {
			tr.Fail(core.ErrWrongAnswer, "no program was run")
		}
		return
	}
	if r.verified != nil && len(r.flags) > 0 {
		tr.Metadata[core.MetaFlags] = flagNotes(r.flags)
	} else {
		delete(tr.Metadata, core.MetaFlags)
	}
	if r.verified != nil && !*r.verified {
		tr.Fail(core.ErrWrongAnswer, r.verifyMsg)
		if r.tampered != "" {
			tr.ExitReason = core.ExitTampered
		}
		return
	}
	if r.verified == nil && r.c.HasVerifier() {
		// Never a success that the task's check did not establish.
		tr.Fail(core.ErrSystem, "the task's verifier did not run")
		return
	}
	tr.Success, tr.ErrorType, tr.ErrorMessage = true, core.ErrNone, ""
}

func (r *run) finish() *core.Trajectory {
	r.tr.TotalDuration = time.Since(r.start).Seconds()
	if r.lastProgram != "" {
		r.tr.Metadata[core.MetaCodeLength] = len(r.lastProgram)
	}
	return r.tr
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
