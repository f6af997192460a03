// Package webagent is the web environment of the rollout engine: an
// attempt's own browser page, opened on the task's start page (Start), one
// browser action a step recorded with the page observation that followed
// (Step), the task's checks on the final page, hidden from whatever chose
// the actions (Evaluate). The actions come from the task, the template
// cache, a model, or the blueprint's search heuristics (the rules policy,
// here); rollout.Runner runs the attempt (Agent.Execute).
package webagent

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
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
	// directory, core.TrajectoriesPath): step screenshots and kept
	// downloads, named by the attempt (core.ScreenshotFileName,
	// core.DownloadFileName).
	ScreenshotDir string
	// Vision sends the model a screenshot of the viewport after the start
	// page and after every step (WEB_VISION): an image content part of the
	// next request (only the latest image is sent; see rollout.ModelPolicy).
	// Each screenshot is also a file of the attempt, referenced from its
	// step as the screenshot constraint's are. Needs ScreenshotDir.
	Vision bool
}

// Execute runs a web task: its attempt (Attempt) in the one rollout loop.
// The error is non-nil only when no browser session could be opened (a
// system error, retried on another delivery).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	at, tr := a.Attempt(ctx, task)
	if tr != nil {
		return tr, nil
	}
	var m rollout.Model
	if a.LLM != nil {
		m = a.LLM
	}
	run := rollout.Runner{Cache: a.Cache, Model: m, Metrics: a.Metrics, Log: a.Log}
	return run.Run(ctx, at)
}

// Attempt is the attempt of task for rollout.Runner.Run: its environment
// (an *Environment: a page of its own from Pages at Start), the task's own
// actions, the rules as its policy without a model, and its budget
// (rollout.BudgetFrom ctx). A task whose constraints do not decode is its
// trajectory instead (invalid_task).
func (a *Agent) Attempt(ctx context.Context, task core.TaskSpec) (rollout.Attempt, *core.Trajectory) {
	e := &Environment{a: a, task: task}
	var err error
	if e.c, err = task.Web(); err != nil {
		return rollout.Attempt{}, rollout.Rejected(task, rollout.Failure{Type: core.ErrSystem, Message: "invalid constraints: " + err.Error()})
	}
	return rollout.Attempt{Task: task, Env: e, Scripted: e.scripted(), Rules: e.rules(), Budget: rollout.BudgetFrom(ctx, task)}, nil
}

// CacheKey is the task's template cache key: the start URL and the check
// are part of it.
func (e *Environment) CacheKey() string {
	return templatecache.Key(string(e.task.TaskType), e.task.Description, e.c.StartURL, e.c.CheckDigest())
}

// Replay is a cached action sequence's actions. A cached sequence passed
// its checks, echoes taken out, unflagged (flagged successes are not
// cached): what it types is not suspect.
func (e *Environment) Replay(en templatecache.Entry) ([]rollout.Action, bool) {
	if en.Kind != templatecache.KindActions {
		return nil, false
	}
	as, err := decodeActions(en.Actions)
	if err != nil {
		return nil, false
	}
	return inputs(as), true
}

// Entry caches the actions that succeeded.
func (e *Environment) Entry() (templatecache.Entry, bool) {
	if len(e.done) == 0 {
		return templatecache.Entry{}, false
	}
	b, err := json.Marshal(e.done)
	if err != nil {
		return templatecache.Entry{}, false
	}
	return templatecache.Entry{Kind: templatecache.KindActions, Actions: b}, true
}
