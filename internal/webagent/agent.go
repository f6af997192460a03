// Package webagent executes web tasks in a browser session: it opens the
// start page, performs actions (scripted in the task, replayed from the
// template cache, chosen by an LLM, or by the blueprint's search heuristics),
// records each with the page observation that followed, and verifies the
// outcome.
package webagent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/agentdataplatform/adp/internal/agent"
	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// Constraints are what a web task may carry; the one definition is core's.
type Constraints = core.WebConstraints

// Page is a browser session as the agent uses it; *browser.Session is one.
// Tests give the agent pages without a browser.
type Page interface {
	Goto(ctx context.Context, url string) error
	Click(ctx context.Context, selector string) error
	Fill(ctx context.Context, selector, text string) error
	FillAndSubmit(ctx context.Context, selector, text string) error
	Press(ctx context.Context, selector, key string) error
	Select(ctx context.Context, selector, value string) error
	DoubleClick(ctx context.Context, selector string) error
	Hover(ctx context.Context, selector string) error
	Drag(ctx context.Context, selector, target string) error
	MouseClick(ctx context.Context, x, y float64) error
	Key(ctx context.Context, key string) error
	Back(ctx context.Context) error
	SwitchTab(ctx context.Context, i int) error
	// AnswerNextDialog sets how the next dialog is answered.
	AnswerNextDialog(a browser.DialogAnswer)
	Scroll(ctx context.Context, direction string) error
	Find(ctx context.Context, text string) error
	Wait(ctx context.Context, selector string) error
	Extract(ctx context.Context, selector string) (string, error)
	Observe(ctx context.Context) (browser.Observation, error)
	// PageText is the current page's title and whole rendered text, for
	// verification.
	PageText(ctx context.Context) (string, error)
	// Eval runs a task's own script (the body of an async function) in
	// the page.
	Eval(ctx context.Context, body string) (any, error)
	Screenshot(ctx context.Context, path string) error
	// KeepDownloads keeps the page's downloads in dir, named by name.
	KeepDownloads(dir string, name browser.DownloadName)
	Close() error
}

// Pages opens a page per task.
type Pages interface {
	Acquire(ctx context.Context) (Page, error)
}

// PoolPages opens the pages of a browser pool.
func PoolPages(p *browser.Pool) Pages { return poolPages{p} }

type poolPages struct{ p *browser.Pool }

func (pp poolPages) Acquire(ctx context.Context) (Page, error) {
	s, err := pp.p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Agent is the web runtime's worker.Executor.
type Agent struct {
	Pages   Pages
	LLM     *llm.Client // nil: no LLM configured
	Cache   *templatecache.Cache
	Metrics *metrics.Set
	Log     *slog.Logger
	// ScreenshotDir is where an attempt's files go (the trajectory
	// directory): step screenshots and kept downloads, each named by
	// outputName.
	ScreenshotDir string
	// Vision sends the model a screenshot of the viewport after the start
	// page and after every step (WEB_VISION): an image content part of the
	// next request (only the latest image is sent; see agent.ImageTools).
	// Each screenshot is also a file of the attempt, referenced from its
	// step as the screenshot constraint's are. Needs ScreenshotDir.
	Vision bool
}

// run is one attempt: the environment, and the trajectory its steps are
// recorded in.
type run struct {
	a     *Agent
	task  core.TaskSpec
	tr    *core.Trajectory
	e     *env
	start time.Time
}

// record appends the steps the environment performed.
func (r *run) record(steps ...core.ExecutionStep) {
	for _, s := range steps {
		r.tr.AddStep(s)
	}
}

// lastStep is the last recorded step, nil when there is none.
func (r *run) lastStep() *core.ExecutionStep {
	if n := len(r.tr.Steps); n > 0 {
		return &r.tr.Steps[n-1]
	}
	return nil
}

// Execute runs a web task. The error is non-nil only when no browser
// session could be opened (a system error, retried on another delivery).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	r := &run{a: a, task: task, tr: core.NewTrajectory(task, ""), start: time.Now()}
	r.e = &env{a: a, task: task}
	if err := task.DecodeConstraints(&r.e.c); err != nil {
		r.tr.Fail(core.ErrSystem, "invalid constraints: "+err.Error())
		r.tr.ExitReason = core.ExitInvalidTask
		return r.finish(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(task.Timeout)*time.Second)
	defer cancel()

	defer r.e.close()
	steps, err := r.e.start(ctx)
	r.record(steps...)
	if r.e.instruction != "" {
		r.tr.Metadata[core.MetaPageInstruction] = r.e.instruction
	}
	if err != nil {
		var se *startError
		if !errors.As(err, &se) {
			return nil, err
		}
		r.tr.Fail(se.kind, se.msg)
		if se.exit != "" {
			r.tr.ExitReason = se.exit
		}
		return r.finish(), nil
	}
	if r.e.ended() {
		// The start page failed: no source is asked for actions.
		r.Conclude(ctx)
		return r.finish(), nil
	}
	x := agent.Executor{Cache: a.Cache, HasModel: a.LLM != nil, Metrics: a.Metrics, Log: a.Log}
	x.Run(ctx, r.tr, task, r)
	return r.finish(), nil
}

var _ agent.Task = (*run)(nil)

// Scripted replays constraints.actions.
func (r *run) Scripted(ctx context.Context) bool {
	if len(r.e.c.Actions) == 0 {
		return false
	}
	r.e.authored = true
	defer func() { r.e.authored = false }()
	r.replay(ctx, r.e.c.Actions)
	return true
}

// CacheKey is the task's template cache key: the start URL and the check
// are part of it.
func (r *run) CacheKey() string {
	return templatecache.Key(string(r.task.TaskType), r.task.Description, r.e.c.StartURL, r.e.c.CheckDigest())
}

// Replay replays a cached action sequence.
func (r *run) Replay(ctx context.Context, e templatecache.Entry) bool {
	if e.Kind != templatecache.KindActions {
		return false
	}
	as, err := decodeActions(e.Actions)
	if err != nil {
		return false
	}
	// A cached sequence passed its checks, echoes taken out, unflagged
	// (flagged successes are not cached): what it types is not suspect.
	r.e.authored = true
	defer func() { r.e.authored = false }()
	r.replay(ctx, as)
	return true
}

// Model lets the model choose the actions.
func (r *run) Model(ctx context.Context) { r.withLLM(ctx) }

// Rules performs the blueprint's search heuristics; they apply to every
// web task that has a page to work on (a start_url or a URL in its
// description).
func (r *run) Rules(ctx context.Context) bool {
	r.e.authored = true
	defer func() { r.e.authored = false }()
	return r.withRules(ctx)
}

// Entry caches the actions that succeeded.
func (r *run) Entry() (templatecache.Entry, bool) {
	if len(r.e.done) == 0 {
		return templatecache.Entry{}, false
	}
	b, err := json.Marshal(r.e.done)
	if err != nil {
		return templatecache.Entry{}, false
	}
	return templatecache.Entry{Kind: templatecache.KindActions, Actions: b}, true
}

// replay performs a fixed sequence, stopping at the first failure.
func (r *run) replay(ctx context.Context, as []Action) {
	for _, a := range as {
		if len(r.tr.Steps) >= r.task.MaxSteps+1 { // +1: the opening goto
			r.tr.Metadata[core.MetaStopReason] = string(core.ExitMaxSteps)
			r.tr.ExitReason = core.ExitMaxSteps
			return
		}
		step := r.e.step(ctx, a)
		r.record(step)
		if !step.Success || a.Action == "finish" {
			return
		}
	}
}

// do performs one action as a recorded step.
func (r *run) do(ctx context.Context, a Action) core.ExecutionStep {
	step := r.e.step(ctx, a)
	r.record(step)
	return step
}

// Conclude records the environment's evaluation.
func (r *run) Conclude(ctx context.Context) {
	tr := r.tr
	v := r.e.evaluate(ctx, r.lastStep())
	tr.Metadata[core.MetaFinalURL] = v.FinalURL
	tr.FinalResult = v.FinalResult
	if tr.ErrorType != core.ErrNone {
		return // already failed (invalid constraints)
	}
	tr.Reward = v.Reward
	if v.Verified != nil {
		tr.Metadata[core.MetaVerified] = *v.Verified
	}
	if len(v.Flags) > 0 {
		tr.Metadata[core.MetaFlags] = v.Flags
	}
	if !v.Success {
		tr.Fail(v.ErrorType, v.ErrorMessage)
		if v.Aborted {
			tr.ExitReason = core.ExitAborted
			if v.ErrorType == core.ErrTimeout {
				tr.ExitReason = core.ExitTimeout
			}
		}
		return
	}
	tr.Success = true
}

func (r *run) finish() *core.Trajectory {
	r.tr.TotalDuration = time.Since(r.start).Seconds()
	return r.tr
}
