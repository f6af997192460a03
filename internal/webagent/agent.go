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
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
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
	Scroll(ctx context.Context) error
	Wait(ctx context.Context, selector string) error
	Extract(ctx context.Context, selector string) (string, error)
	Observe(ctx context.Context) (browser.Observation, error)
	Screenshot(ctx context.Context, path string) error
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
	// ScreenshotDir is where step screenshots go (the trajectory directory).
	ScreenshotDir string
}

type run struct {
	a     *Agent
	task  core.TaskSpec
	c     Constraints
	tr    *core.Trajectory
	s     Page
	start time.Time

	done     []Action // actions performed successfully (for the cache)
	answer   *string  // the finish answer
	lastObs  browser.Observation
	fatal    error // an error that ends the task (browser died, blocked, ...)
	extracts []string
}

// Execute runs a web task. The error is non-nil only when no browser
// session could be opened (a system error, retried on another delivery).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	r := &run{a: a, task: task, tr: core.NewTrajectory(task, ""), start: time.Now()}
	if err := task.DecodeConstraints(&r.c); err != nil {
		r.tr.Fail(core.ErrSystem, "invalid constraints: "+err.Error())
		r.tr.ExitReason = core.ExitInvalidTask
		return r.finish(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(task.Timeout)*time.Second)
	defer cancel()

	s, err := a.Pages.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			r.tr.Fail(core.ErrTimeout, "no browser slot became free within the task's timeout")
			return r.finish(), nil
		}
		return nil, fmt.Errorf("open browser session for task %s: %w", task.TaskID, err)
	}
	r.s = s
	defer s.Close()

	if r.c.StartURL != "" {
		r.do(ctx, Action{Action: "goto", URL: r.c.StartURL}, true)
	}
	if r.fatal != nil {
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
	if len(r.c.Actions) == 0 {
		return false
	}
	r.replay(ctx, r.c.Actions)
	return true
}

// CacheKey is the task's template cache key: the start URL and the check
// are part of it.
func (r *run) CacheKey() string {
	return templatecache.Key(string(r.task.TaskType), r.task.Description, r.c.StartURL, r.c.CheckDigest())
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
	r.replay(ctx, as)
	return true
}

// Model lets the model choose the actions.
func (r *run) Model(ctx context.Context) { r.withLLM(ctx) }

// Rules performs the blueprint's search heuristics; they apply to every
// web task.
func (r *run) Rules(ctx context.Context) bool {
	r.withRules(ctx)
	return true
}

// Entry caches the actions that succeeded.
func (r *run) Entry() (templatecache.Entry, bool) {
	if len(r.done) == 0 {
		return templatecache.Entry{}, false
	}
	b, err := json.Marshal(r.done)
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
		step := r.do(ctx, a, false)
		if !step.Success || a.Action == "finish" {
			return
		}
	}
}

// do performs one action as a step, observes the page after it, and
// returns (a copy of) the step.
func (r *run) do(ctx context.Context, a Action, initial bool) core.ExecutionStep {
	started := time.Now()
	params := a.Params()
	if initial {
		params["initial"] = true
	}
	if err := a.Validate(); err != nil {
		step := core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: params,
			ErrorType: core.ErrRuntime, ErrorMessage: err.Error(), Timestamp: core.UnixSeconds(started)}
		r.tr.AddStep(step)
		return step
	}
	extracted, err := perform(ctx, r.s, a)
	step := core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: params, Timestamp: core.UnixSeconds(started)}
	if a.Action == "finish" {
		ans := a.Answer
		r.answer = &ans
	}
	if a.Action == "extract" && err == nil {
		r.extracts = append(r.extracts, extracted)
	}
	obs, oerr := r.lastObs, error(nil)
	if a.Action != "finish" || len(r.tr.Steps) == 0 { // finish does not change the page
		obs, oerr = r.s.Observe(ctx)
		if oerr == nil {
			r.lastObs = obs
		}
	}
	step.Observation = render(obs, extracted, a.Action == "extract")
	if err == nil && oerr != nil && browser.Classify(oerr) == core.ErrBrowser {
		err = oerr // the browser died right after the action
	}
	if err != nil {
		step.ErrorType = browser.Classify(err)
		step.ErrorMessage = err.Error()
		if step.ErrorType == core.ErrBrowser || step.ErrorType == core.ErrBlockedURL || initial {
			r.fatal = err
		}
		if step.ErrorType == core.ErrBrowser {
			step.Observation = "the browser crashed or was disconnected"
		}
		r.a.Metrics.BrowserNavigationErrors.WithLabelValues(string(step.ErrorType)).Inc()
	} else {
		step.Success = true
		if !initial {
			r.done = append(r.done, a)
		}
	}
	if r.c.Screenshot && step.ErrorType != core.ErrBrowser {
		r.screenshot(ctx, &step)
	}
	step.Duration = time.Since(started).Seconds()
	r.tr.AddStep(step)
	return step
}

func (r *run) screenshot(ctx context.Context, step *core.ExecutionStep) {
	if r.a.ScreenshotDir == "" {
		return
	}
	// Named by the attempt, as its trajectory file is: attempts do not
	// overwrite each other's screenshots.
	name := fmt.Sprintf("%s.step-%d.png", core.AttemptName(r.task.TaskID, r.task.SampleIndex), len(r.tr.Steps)+1)
	if err := r.s.Screenshot(ctx, filepath.Join(r.a.ScreenshotDir, name)); err != nil {
		r.a.Log.Warn("screenshot failed", "task_id", r.task.TaskID, "err", err)
		return
	}
	step.ActionParams["screenshot"] = name
}

// Conclude decides success: the task ended without a fatal error and, when
// it has a verifier, the verifier passed.
func (r *run) Conclude(ctx context.Context) {
	tr := r.tr
	tr.Metadata[core.MetaFinalURL] = r.lastObs.URL
	if r.answer != nil {
		tr.FinalResult = *r.answer
	} else if n := len(r.extracts); n > 0 {
		tr.FinalResult = r.extracts[n-1]
	} else {
		tr.FinalResult = r.lastObs.Title
	}
	if tr.ErrorType != core.ErrNone {
		return // already failed (invalid constraints)
	}
	tr.SetReward(0, r.c.Checks()) // until the checks pass below
	if r.fatal != nil {
		tr.Fail(browser.Classify(r.fatal), r.fatal.Error())
		if tr.ErrorType == core.ErrTimeout {
			tr.ExitReason = core.ExitTimeout
		} else {
			tr.ExitReason = core.ExitAborted
		}
		return
	}
	if n := len(tr.Steps); n > 0 && !tr.Steps[n-1].Success {
		s := tr.Steps[n-1]
		tr.Fail(s.ErrorType, s.ErrorMessage)
		return
	}
	if !r.c.HasVerifier() {
		tr.Success = true
		return
	}
	ok, why, passed, total := r.verify()
	tr.SetReward(passed, total)
	tr.Metadata[core.MetaVerified] = ok
	if !ok {
		tr.Fail(core.ErrWrongAnswer, why)
		return
	}
	tr.Success = true
}

// verify checks expected_text, expected_url and answer, each of them, and
// returns whether all passed, the first failure, and how many of how many
// passed.
func (r *run) verify() (ok bool, why string, passed, total int) {
	answer := ""
	if r.answer != nil {
		answer = strings.TrimSpace(*r.answer)
	}
	check := func(pass bool, fail string) {
		total++
		if pass {
			passed++
		} else if why == "" {
			why = fail
		}
	}
	if t := r.c.ExpectedText; t != "" {
		page := r.lastObs.Title + "\n" + r.lastObs.Text + "\n" + strings.Join(r.extracts, "\n")
		check(strings.Contains(page, t) || strings.Contains(answer, t),
			fmt.Sprintf("expected text %q is neither on the final page nor in the answer", t))
	}
	if u := r.c.ExpectedURL; u != "" {
		check(strings.Contains(r.lastObs.URL, u), fmt.Sprintf("final URL %q does not contain %q", r.lastObs.URL, u))
	}
	if r.c.Answer != nil {
		want := strings.TrimSpace(*r.c.Answer)
		check(answer == want, fmt.Sprintf("answer %q is not the expected %q", answer, want))
	}
	return passed == total, why, passed, total
}

func (r *run) finish() *core.Trajectory {
	r.tr.TotalDuration = time.Since(r.start).Seconds()
	return r.tr
}

// render formats an observation for the trajectory and the model.
func render(o browser.Observation, extracted string, isExtract bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "URL: %s\nTitle: %s\n", o.URL, o.Title)
	if o.Status != 0 {
		fmt.Fprintf(&b, "Status: %d\n", o.Status)
	}
	if isExtract {
		fmt.Fprintf(&b, "\nExtracted:\n%s\n", extracted)
	}
	fmt.Fprintf(&b, "\nText:\n%s\n", o.Text)
	if o.TextTruncated {
		b.WriteString("[text truncated]\n")
	}
	if o.AriaSnapshot != "" {
		fmt.Fprintf(&b, "\nAccessibility snapshot:\n%s\n", o.AriaSnapshot)
		if o.SnapshotTruncated {
			b.WriteString("[snapshot truncated]\n")
		}
	}
	return b.String()
}
