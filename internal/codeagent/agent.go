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
	"time"

	"github.com/agentdataplatform/adp/internal/agent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// Agent is the sandbox runtime's worker.Executor.
type Agent struct {
	Jail   sandbox.Jail
	Limits sandbox.Limits
	// LLM generates programs; nil means no LLM is configured.
	LLM *llm.Client
	// Cache is the template cache; nil disables it.
	Cache   *templatecache.Cache
	Metrics *metrics.Set
	Log     *slog.Logger
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
	verifiedFor string // the program verified last
	jailErr     error
}

// Execute runs task and returns its trajectory. The error is non-nil only
// for system failures (the jail could not launch).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	r := &run{a: a, task: task, tr: core.NewTrajectory(task, ""), start: time.Now()}
	if err := task.DecodeConstraints(&r.c); err != nil {
		r.tr.Fail(core.ErrSystem, "invalid constraints: "+err.Error())
		return r.finish(), nil
	}
	deadline := time.Now().Add(time.Duration(task.Timeout) * time.Second)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	switch {
	case r.c.Code != "":
		r.tr.Metadata["source"] = agent.SourceScripted
		r.runProgram(ctx, r.c.Code)
	default:
		if !r.fromCache(ctx) {
			if a.LLM != nil {
				r.tr.Metadata["source"] = agent.SourceLLM
				r.withLLM(ctx)
			} else if program, rule := ruleProgram(task.Description); program != "" {
				r.tr.Metadata["source"] = agent.SourceRules
				r.tr.Metadata["rule"] = rule
				r.runProgram(ctx, program)
			} else {
				r.tr.Metadata["source"] = "none"
				r.tr.Fail(core.ErrSystem, "no LLM is configured (set LLM_BASE_URL) and no rule matches this task; "+
					"give it a program in constraints.code or configure an OpenAI-compatible LLM")
				return r.finish(), nil
			}
		}
	}
	if r.jailErr != nil {
		return nil, fmt.Errorf("task %s: %w: %w", task.TaskID, ErrJail, r.jailErr)
	}
	r.conclude()
	if r.tr.Success {
		r.store(ctx)
	}
	return r.finish(), nil
}

// fromCache runs the cached program, if any; it reports whether the cache
// answered (hit, even if the replay failed).
func (r *run) fromCache(ctx context.Context) bool {
	a := r.a
	if a.Cache == nil {
		return false
	}
	key := templatecache.Key(string(r.task.TaskType), r.task.Description)
	e, ok, err := a.Cache.Get(ctx, key)
	if err != nil {
		a.Log.Warn("template cache read failed; treated as a miss", "task_id", r.task.TaskID, "err", err)
	}
	if !ok || e.Kind != templatecache.KindProgram {
		a.Metrics.CacheMisses.WithLabelValues(string(r.task.TaskType)).Inc()
		r.tr.Metadata["cache_hit"] = false
		return false
	}
	a.Metrics.CacheHits.WithLabelValues(string(r.task.TaskType)).Inc()
	r.tr.Metadata["cache_hit"] = true
	r.tr.Metadata["source"] = agent.SourceCache
	r.tr.Metadata["cached_from"] = e.Source
	r.runProgram(ctx, e.Program)
	r.conclude()
	if !r.tr.Success {
		// A cached program that no longer passes is evicted.
		if err := a.Cache.Delete(ctx, key); err != nil {
			a.Log.Warn("template cache evict failed", "task_id", r.task.TaskID, "err", err)
		}
	}
	return true
}

// store caches a program that succeeded (and was verified where a verifier
// exists), so a repeated task skips the LLM.
func (r *run) store(ctx context.Context) {
	src, _ := r.tr.Metadata["source"].(string)
	if r.a.Cache == nil || r.lastProgram == "" || (src != agent.SourceLLM && src != agent.SourceRules) {
		return
	}
	e := templatecache.Entry{Kind: templatecache.KindProgram, Program: r.lastProgram, Source: src, Verified: r.verified}
	if err := r.a.Cache.Put(ctx, templatecache.Key(string(r.task.TaskType), r.task.Description), e); err != nil {
		r.a.Log.Warn("template cache write failed", "task_id", r.task.TaskID, "err", err)
	}
}

// runProgram executes one program as a step and verifies it.
func (r *run) runProgram(ctx context.Context, program string) *core.ExecutionStep {
	res, step := r.execute(ctx, program, "run")
	if res == nil || !res.OK() {
		return step
	}
	r.lastProgram, r.lastResult = program, res
	r.verify(ctx)
	return step
}

// execute runs code in the jail and records it as a step.
func (r *run) execute(ctx context.Context, code, purpose string) (*sandbox.Result, *core.ExecutionStep) {
	lim := r.a.Limits
	if dl, ok := ctx.Deadline(); ok {
		if rem := time.Until(dl); rem < lim.Wall || lim.Wall == 0 {
			lim.Wall = max(rem, 100*time.Millisecond)
		}
	}
	params := map[string]any{"code": code, "language": "python", "purpose": purpose}
	if r.c.Stdin != "" {
		params["stdin"] = r.c.Stdin
	}
	started := time.Now()
	res, err := r.a.Jail.Run(ctx, sandbox.Request{Code: code, Stdin: []byte(r.c.Stdin), Limits: lim})
	r.a.Metrics.SandboxExecDuration.Observe(res.Wall.Seconds())
	if err != nil {
		r.a.Metrics.SandboxJailFailures.Inc()
		if ctx.Err() == nil {
			r.jailErr = err
		}
		step := r.tr.AddStep(core.ExecutionStep{
			ActionType: core.ActionCodeExecution, ActionParams: params,
			ErrorType: core.ErrSystem, ErrorMessage: err.Error(),
			Timestamp: core.UnixSeconds(started), Duration: time.Since(started).Seconds(),
		})
		return nil, step
	}
	params["exit_code"] = res.ExitCode
	step := r.tr.AddStep(core.ExecutionStep{
		ActionType:   core.ActionCodeExecution,
		ActionParams: params,
		Observation:  observation(res),
		Success:      res.OK(),
		ErrorType:    res.ErrorType,
		ErrorMessage: res.ErrorMessage,
		Timestamp:    core.UnixSeconds(started),
		Duration:     res.Wall.Seconds(),
	})
	return &res, step
}

// verify checks the last clean run against the task's verifier.
func (r *run) verify(ctx context.Context) {
	if !r.c.hasVerifier() {
		r.verified, r.verifyMsg = nil, ""
		return
	}
	r.verifiedFor = r.lastProgram
	ok := true
	var msg string
	if r.c.ExpectedOutput != nil {
		got, want := normalizeOutput(r.lastResult.Stdout), normalizeOutput(*r.c.ExpectedOutput)
		if got != want {
			ok = false
			msg = fmt.Sprintf("output %q does not match the expected output %q", clip(got, 200), clip(want, 200))
		}
	}
	if ok && r.c.Tests != "" {
		res, step := r.execute(ctx, r.lastProgram+"\n\n# --- tests (constraints.tests) ---\n"+r.c.Tests+"\n", "verify")
		switch {
		case res == nil:
			ok, msg = false, "the tests could not run: "+step.ErrorMessage
		case !res.OK():
			ok = false
			msg = "tests failed: " + res.ErrorMessage
			if res.ErrorType == core.ErrRuntime {
				step.ErrorType = core.ErrWrongAnswer
			}
		}
	}
	r.verified, r.verifyMsg = &ok, msg
}

// conclude sets success and the error of the trajectory from the last
// step and the verification.
func (r *run) conclude() {
	tr := r.tr
	if r.lastResult != nil {
		tr.FinalResult = strings.TrimRight(r.lastResult.Stdout, "\n")
	}
	if r.verified != nil {
		tr.Metadata["verified"] = *r.verified
	} else {
		delete(tr.Metadata, "verified")
	}
	if r.lastResult == nil {
		// No clean run: the last step's error is the task's.
		if n := len(tr.Steps); n > 0 {
			s := tr.Steps[n-1]
			tr.Fail(s.ErrorType, s.ErrorMessage)
		} else if tr.ErrorType == core.ErrNone {
			tr.Fail(core.ErrWrongAnswer, "no program was run")
		}
		return
	}
	if r.verified != nil && !*r.verified {
		tr.Fail(core.ErrWrongAnswer, r.verifyMsg)
		return
	}
	tr.Success, tr.ErrorType, tr.ErrorMessage = true, core.ErrNone, ""
}

func (r *run) finish() *core.Trajectory {
	r.tr.TotalDuration = time.Since(r.start).Seconds()
	if r.lastProgram != "" {
		r.tr.Metadata["code_length"] = len(r.lastProgram)
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
