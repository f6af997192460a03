// Package webagent executes web tasks in a browser session: it opens the
// start page, performs actions (scripted in the task, replayed from the
// template cache, chosen by an LLM, or by the blueprint's search heuristics),
// records each with the page observation that followed, and verifies the
// outcome.
package webagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
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
	// instruction is what the task's instruction_script returned.
	instruction string
	// typed is what the agent typed or sent to the site: fill and select
	// values, a prompt's answer, the keys it pressed one by one (joined),
	// the URLs it went to (unescaped). A page that echoes it (a search
	// page repeating the query) does not verify expected_text.
	typed []string
	keys  strings.Builder // single-character keys since the last other key
	// vision is set while the model acts with Agent.Vision: every step is
	// screenshot, and image is the latest, for the next request.
	vision    bool
	image     []byte
	imageNote string
	// authored is set while the task's own actions, the rules or a cached
	// sequence run: what they type is the task's (its actions, its
	// description) or passed the checks before, not a model's.
	authored bool
	// docMark is a random window property prepare set on the start page
	// of a task with a reward_script: the reward is the page's only while
	// the final page is that document (an agent that navigates to another
	// page, even an easier task of the same site, earns nothing there).
	docMark string
}

// Execute runs a web task. The error is non-nil only when no browser
// session could be opened (a system error, retried on another delivery).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	r := &run{a: a, task: task, tr: core.NewTrajectory(task, ""), start: time.Now()}
	var err error
	if r.c, err = task.Web(); err != nil {
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
	if a.ScreenshotDir != "" {
		s.KeepDownloads(a.ScreenshotDir, func(n int, suggested string) string {
			return r.outputName(fmt.Sprintf("download-%d-%s", n, suggested))
		})
	}

	if r.c.StartURL != "" {
		r.do(ctx, Action{Action: "goto", URL: r.c.StartURL}, true)
	}
	if r.fatal != nil {
		// The start page failed: no source is asked for actions.
		r.Conclude(ctx)
		return r.finish(), nil
	}
	if !r.prepare(ctx) {
		return r.finish(), nil
	}
	x := agent.Executor{Cache: a.Cache, HasModel: a.LLM != nil, Metrics: a.Metrics, Log: a.Log}
	x.Run(ctx, r.tr, task, r)
	return r.finish(), nil
}

var _ agent.Task = (*run)(nil)

// prepare runs the task's setup_script and instruction_script on the start
// page, before any source acts; the start step's observation is then the
// page after the setup (marked "setup": true). A script that fails makes
// the task invalid; false then.
func (r *run) prepare(ctx context.Context) bool {
	if r.c.SetupScript == "" && r.c.InstructionScript == "" && r.c.RewardScript == "" {
		return true
	}
	if len(r.tr.Steps) == 0 {
		r.tr.Fail(core.ErrSystem, "setup_script, instruction_script and reward_script need a start_url to run on")
		r.tr.ExitReason = core.ExitInvalidTask
		return false
	}
	fail := func(what string, err error) bool {
		if browser.Classify(err) == core.ErrBrowser {
			r.fatal = err
			r.Conclude(ctx)
			return false
		}
		r.tr.Fail(core.ErrSystem, what+" failed: "+err.Error())
		r.tr.ExitReason = core.ExitInvalidTask
		return false
	}
	if r.c.RewardScript != "" {
		r.docMark = "__adp_task_" + randomHex()
		if _, err := r.s.Eval(ctx, fmt.Sprintf("Object.defineProperty(window, %q, {value: true});", r.docMark)); err != nil {
			return fail("marking the start page", err)
		}
	}
	if r.c.SetupScript != "" {
		if _, err := r.s.Eval(ctx, r.c.SetupScript); err != nil {
			return fail("setup_script", err)
		}
	}
	if r.c.InstructionScript != "" {
		v, err := r.s.Eval(ctx, r.c.InstructionScript)
		if err != nil {
			return fail("instruction_script", err)
		}
		text, ok := v.(string)
		if !ok || strings.TrimSpace(text) == "" {
			return fail("instruction_script", fmt.Errorf("it returned %v, not a non-empty string", v))
		}
		r.instruction = strings.TrimSpace(text)
		r.tr.Metadata[core.MetaPageInstruction] = r.instruction
	}
	if r.c.SetupScript == "" && r.c.InstructionScript == "" {
		return true // the start page is as observed
	}
	obs, err := r.s.Observe(ctx)
	if err != nil {
		r.fatal = err
		r.Conclude(ctx)
		return false
	}
	r.lastObs = obs
	r.tr.Steps[0].Observation = render(obs, "", false)
	r.tr.Steps[0].ActionParams["setup"] = true
	return true
}

// description is the task as the model is told it: the task's description
// and the page's instruction.
func (r *run) description() string {
	if r.instruction == "" {
		return r.task.Description
	}
	return r.task.Description + "\n" + r.instruction
}

// Scripted replays constraints.actions.
func (r *run) Scripted(ctx context.Context) bool {
	if len(r.c.Actions) == 0 {
		return false
	}
	r.authored = true
	defer func() { r.authored = false }()
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
	// A cached sequence passed its checks, echoes taken out, unflagged
	// (flagged successes are not cached): what it types is not suspect.
	r.authored = true
	defer func() { r.authored = false }()
	r.replay(ctx, as)
	return true
}

// Model lets the model choose the actions.
func (r *run) Model(ctx context.Context) { r.withLLM(ctx) }

// Rules performs the blueprint's search heuristics; they apply to every
// web task that has a page to work on (a start_url or a URL in its
// description).
func (r *run) Rules(ctx context.Context) bool {
	r.authored = true
	defer func() { r.authored = false }()
	return r.withRules(ctx)
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
	if !initial && !r.authored {
		r.noteTyped(a)
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
	if (r.c.Screenshot || r.vision) && step.ErrorType != core.ErrBrowser {
		r.screenshot(ctx, &step, len(r.tr.Steps)+1)
	}
	step.Duration = time.Since(started).Seconds()
	r.tr.AddStep(step)
	return step
}

// screenshot saves the viewport as the file of step n (from 1) and names it
// in the step; with vision it is also the image for the model's next
// request.
func (r *run) screenshot(ctx context.Context, step *core.ExecutionStep, n int) {
	if r.a.ScreenshotDir == "" {
		return
	}
	name := r.outputName(fmt.Sprintf("step-%d.png", n))
	path := filepath.Join(r.a.ScreenshotDir, name)
	if err := r.s.Screenshot(ctx, path); err != nil {
		r.a.Log.Warn("screenshot failed", "task_id", r.task.TaskID, "err", err)
		return
	}
	step.ActionParams["screenshot"] = name
	if !r.vision {
		return
	}
	png, err := os.ReadFile(path)
	if err != nil {
		r.a.Log.Warn("screenshot unreadable", "task_id", r.task.TaskID, "err", err)
		return
	}
	r.image, r.imageNote = png, fmt.Sprintf("Screenshot of the viewport after step %d (%s).", n, name)
}

// outputName names an attempt's file in ScreenshotDir: by the attempt, as
// its trajectory file is, so attempts do not overwrite each other's files.
func (r *run) outputName(what string) string {
	return core.AttemptName(r.task.TaskID, r.task.SampleIndex) + "." + what
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
	if r.c.RewardScript != "" {
		r.pageReward(ctx)
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
	ok, why, _, passed, total := r.verify(ctx)
	tr.SetReward(passed, total)
	tr.Metadata[core.MetaVerified] = ok
	if !ok {
		tr.Fail(core.ErrWrongAnswer, why)
		return
	}
	tr.Success = true
	if t := r.c.ExpectedText; t != "" && typedContains(r.typedSoFar(), t) {
		// Found outside the echoes, but the agent typed it: an echo the
		// page changed on the way (cut, escaped, reassembled from pieces)
		// would look the same. The success stands, flagged.
		tr.Metadata[core.MetaFlags] = []string{flagTypedExpectedText}
	}
}

// pageReward evaluates the task's reward_script on the final page: its
// number is the reward, as is, and success is a reward above 0. The model
// never sees it.
func (r *run) pageReward(ctx context.Context) {
	tr := r.tr
	tr.Metadata[core.MetaVerified] = false
	same, err := r.s.Eval(ctx, fmt.Sprintf("return window[%q] === true;", r.docMark))
	if err != nil || same != true {
		tr.Fail(core.ErrWrongAnswer, fmt.Sprintf("the final page (%s) is not the task's page: it was navigated away from or reloaded, so its reward is not the task's", r.lastObs.URL))
		return
	}
	v, err := r.s.Eval(ctx, r.c.RewardScript)
	if err != nil {
		tr.Fail(core.ErrWrongAnswer, "reward_script failed: "+err.Error())
		return
	}
	var x float64
	switch n := v.(type) {
	case int:
		x = float64(n)
	case float64:
		x = n
	default:
		tr.Fail(core.ErrWrongAnswer, fmt.Sprintf("reward_script returned %v (%T), not a number", v, v))
		return
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		tr.Fail(core.ErrWrongAnswer, fmt.Sprintf("reward_script returned %v, not a finite number", x))
		return
	}
	tr.SetPageReward(x)
	if x <= 0 {
		why := fmt.Sprintf("the page's reward is %v", x)
		if n := len(tr.Steps); n > 0 && !tr.Steps[n-1].Success {
			why += "; the last step failed: " + tr.Steps[n-1].ErrorMessage
		}
		tr.Fail(core.ErrWrongAnswer, why)
		return
	}
	tr.Metadata[core.MetaVerified] = true
	tr.Success = true
}

// verify checks expected_text, expected_url, answer and answer_contains,
// each of them, and returns whether all passed, the first failure (with the
// expected values, for the record) and the same failure as the model may
// be told (which check failed, never what it expected: the checks are
// hidden), and how many of how many passed.
func (r *run) verify(ctx context.Context) (ok bool, why, feedback string, passed, total int) {
	answer := ""
	if r.answer != nil {
		answer = strings.TrimSpace(*r.answer)
	}
	check := func(pass bool, fail, tell string) {
		total++
		if pass {
			passed++
		} else if why == "" {
			why, feedback = fail, tell
		}
	}
	if t := r.c.ExpectedText; t != "" {
		// The whole final page, not the observation (which shows a part of
		// a long page); never the answer, nor an echo of what the agent
		// typed.
		page, err := r.s.PageText(ctx)
		switch {
		case err != nil:
			check(false, fmt.Sprintf("expected text %q: the final page could not be read: %v", t, err),
				"the final page could not be read")
		default:
			page += "\n" + strings.Join(r.extracts, "\n")
			rest, echoed := withoutEchoes(page, t, r.typedSoFar())
			switch {
			case strings.Contains(rest, t):
				check(true, "", "")
			case echoed && strings.Contains(page, t):
				check(false, fmt.Sprintf("expected text %q is on the final page only where it repeats what the agent typed", t),
					"the final page does not show what the task asks for")
			default:
				check(false, fmt.Sprintf("expected text %q is not on the final page", t),
					"the final page does not show what the task asks for")
			}
		}
	}
	if u := r.c.ExpectedURL; u != "" {
		check(strings.Contains(r.lastObs.URL, u), fmt.Sprintf("final URL %q does not contain %q", r.lastObs.URL, u),
			"the final page is not the one the task asks for")
	}
	if r.c.Answer != nil {
		want := strings.TrimSpace(*r.c.Answer)
		check(answer == want, fmt.Sprintf("answer %q is not the expected %q", answer, want), "the answer is not the expected one")
	}
	if w := r.c.AnswerContains; w != "" {
		check(strings.Contains(answer, w), fmt.Sprintf("answer %q does not contain %q", answer, w), "the answer is not the expected one")
	}
	return passed == total, why, feedback, passed, total
}

// randomHex is 16 random hex digits.
func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
	if p := o.Position(); p != "" {
		b.WriteString(p + "\n")
	}
	if o.Changing {
		b.WriteString("The page was changing while it was read.\n")
	}
	if len(o.Tabs) > 1 {
		b.WriteString("Tabs:")
		for i, u := range o.Tabs {
			cur := ""
			if i == o.Tab {
				cur = " (current)"
			}
			fmt.Fprintf(&b, " [%d] %s%s;", i, u, cur)
		}
		b.WriteString("\n")
	}
	for _, e := range o.Events {
		fmt.Fprintf(&b, "Event: %s\n", e)
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
