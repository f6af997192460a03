package webagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
)

// env is the web environment of one attempt: a page of its own, opened on
// the task's start page and prepared by its scripts (start), one action at
// a time as a recorded step with the page observed after it (step), the
// task's own checks on the final page, hidden from whatever chose the
// actions (evaluate), and the page given back (close).
type env struct {
	a    *Agent
	task core.TaskSpec
	c    Constraints
	s    Page

	steps    int      // steps performed (the start page's included)
	done     []Action // actions performed successfully after the start (for the cache)
	answer   *string  // the finish answer
	lastObs  browser.Observation
	fatal    error // an error that ends the attempt (browser died, blocked, ...)
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
	// docMark is a random window property start set on the start page
	// of a task with a reward_script: the reward is the page's only while
	// the final page is that document (an agent that navigates to another
	// page, even an easier task of the same site, earns nothing there).
	docMark string
}

// startError is how start failed without a system error: the attempt
// ends with it as its failure.
type startError struct {
	kind core.ErrorType
	exit core.ExitReason // "" when the attempt is not an invalid task
	msg  string
}

func (e *startError) Error() string { return e.msg }

// errNoSlot: no browser slot became free within the task's timeout.
var errNoSlot = &startError{kind: core.ErrTimeout, msg: "no browser slot became free within the task's timeout"}

func invalidTask(msg string) *startError {
	return &startError{kind: core.ErrSystem, exit: core.ExitInvalidTask, msg: msg}
}

// start acquires a page, opens the start page (the first step, marked
// "initial") and runs the task's setup_script and instruction_script on
// it; the start step's observation is then the page after the setup
// (marked "setup": true). It returns the steps it performed. A
// *startError ends the attempt without evaluating it (invalid task, no
// browser slot), with the steps performed; another error is a system error (no session could be
// opened). When the start page failed (blocked, the browser died) start
// returns its step and no error, and ended reports it: the attempt is then
// evaluated with no policy asked.
func (e *env) start(ctx context.Context) ([]core.ExecutionStep, error) {
	s, err := e.a.Pages.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, errNoSlot
		}
		return nil, fmt.Errorf("open browser session for task %s: %w", e.task.TaskID, err)
	}
	e.s = s
	if e.a.ScreenshotDir != "" {
		s.KeepDownloads(e.a.ScreenshotDir, func(n int, suggested string) string {
			return e.outputName(fmt.Sprintf("download-%d-%s", n, suggested))
		})
	}
	if e.c.StartURL == "" {
		if e.c.SetupScript != "" || e.c.InstructionScript != "" || e.c.RewardScript != "" {
			return nil, invalidTask("setup_script, instruction_script and reward_script need a start_url to run on")
		}
		return nil, nil
	}
	first := e.do(ctx, Action{Action: "goto", URL: e.c.StartURL}, true)
	if e.fatal != nil {
		return []core.ExecutionStep{first}, nil
	}
	err = e.prepare(ctx, &first)
	return []core.ExecutionStep{first}, err
}

// prepare runs the task's scripts on the start page (see start), first
// being the start step.
func (e *env) prepare(ctx context.Context, first *core.ExecutionStep) error {
	if e.c.SetupScript == "" && e.c.InstructionScript == "" && e.c.RewardScript == "" {
		return nil
	}
	fail := func(what string, err error) error {
		if browser.Classify(err) == core.ErrBrowser {
			e.fatal = err
			return nil
		}
		return invalidTask(what + " failed: " + err.Error())
	}
	if e.c.RewardScript != "" {
		e.docMark = "__adp_task_" + randomHex()
		if _, err := e.s.Eval(ctx, fmt.Sprintf("Object.defineProperty(window, %q, {value: true});", e.docMark)); err != nil {
			return fail("marking the start page", err)
		}
	}
	if e.c.SetupScript != "" {
		if _, err := e.s.Eval(ctx, e.c.SetupScript); err != nil {
			return fail("setup_script", err)
		}
	}
	if e.c.InstructionScript != "" {
		v, err := e.s.Eval(ctx, e.c.InstructionScript)
		if err != nil {
			return fail("instruction_script", err)
		}
		text, ok := v.(string)
		if !ok || strings.TrimSpace(text) == "" {
			return fail("instruction_script", fmt.Errorf("it returned %v, not a non-empty string", v))
		}
		e.instruction = strings.TrimSpace(text)
	}
	if e.c.SetupScript == "" && e.c.InstructionScript == "" {
		return nil // the start page is as observed
	}
	obs, err := e.s.Observe(ctx)
	if err != nil {
		e.fatal = err
		return nil
	}
	e.lastObs = obs
	first.Observation = render(obs, "", false)
	first.ActionParams["setup"] = true
	return nil
}

// ended says whether the attempt cannot go on: the start page failed, the
// browser died, a navigation was blocked.
func (e *env) ended() bool { return e.fatal != nil }

// close gives the page back.
func (e *env) close() {
	if e.s != nil {
		_ = e.s.Close()
	}
}

// description is the task as a policy is told it: the task's description
// and the page's instruction.
func (e *env) description() string {
	if e.instruction == "" {
		return e.task.Description
	}
	return e.task.Description + "\n" + e.instruction
}

// step performs one action, observes the page after it, and returns the
// step as recorded.
func (e *env) step(ctx context.Context, a Action) core.ExecutionStep { return e.do(ctx, a, false) }

// do performs one action as a step (initial: the start page's), observes
// the page after it, and returns the step.
func (e *env) do(ctx context.Context, a Action, initial bool) core.ExecutionStep {
	started := time.Now()
	e.steps++
	params := a.Params()
	if initial {
		params["initial"] = true
	}
	if err := a.Validate(); err != nil {
		return core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: params,
			ErrorType: core.ErrRuntime, ErrorMessage: err.Error(), Timestamp: core.UnixSeconds(started)}
	}
	if !initial && !e.authored {
		e.noteTyped(a)
	}
	extracted, err := perform(ctx, e.s, a)
	step := core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: params, Timestamp: core.UnixSeconds(started)}
	if a.Action == "finish" {
		ans := a.Answer
		e.answer = &ans
	}
	if a.Action == "extract" && err == nil {
		e.extracts = append(e.extracts, extracted)
	}
	obs, oerr := e.lastObs, error(nil)
	if a.Action != "finish" || e.steps == 1 { // finish does not change the page
		obs, oerr = e.s.Observe(ctx)
		if oerr == nil {
			e.lastObs = obs
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
			e.fatal = err
		}
		if step.ErrorType == core.ErrBrowser {
			step.Observation = "the browser crashed or was disconnected"
		}
		e.a.Metrics.BrowserNavigationErrors.WithLabelValues(string(step.ErrorType)).Inc()
	} else {
		step.Success = true
		if !initial {
			e.done = append(e.done, a)
		}
	}
	if (e.c.Screenshot || e.vision) && step.ErrorType != core.ErrBrowser {
		e.screenshot(ctx, &step, e.steps)
	}
	step.Duration = time.Since(started).Seconds()
	return step
}

// screenshot saves the viewport as the file of step n (from 1) and names it
// in the step; with vision it is also the image for the model's next
// request.
func (e *env) screenshot(ctx context.Context, step *core.ExecutionStep, n int) {
	if e.a.ScreenshotDir == "" {
		return
	}
	name := e.outputName(fmt.Sprintf("step-%d.png", n))
	path := filepath.Join(e.a.ScreenshotDir, name)
	if err := e.s.Screenshot(ctx, path); err != nil {
		e.a.Log.Warn("screenshot failed", "task_id", e.task.TaskID, "err", err)
		return
	}
	step.ActionParams["screenshot"] = name
	if !e.vision {
		return
	}
	png, err := os.ReadFile(path)
	if err != nil {
		e.a.Log.Warn("screenshot unreadable", "task_id", e.task.TaskID, "err", err)
		return
	}
	e.image, e.imageNote = png, fmt.Sprintf("Screenshot of the viewport after step %d (%s).", n, name)
}

// takeImage returns (and forgets) the screenshot of the last step, with
// vision.
func (e *env) takeImage() (png []byte, note string, ok bool) {
	png, note = e.image, e.imageNote
	e.image, e.imageNote = nil, ""
	return png, note, png != nil
}

// outputName names an attempt's file in ScreenshotDir: by the attempt, as
// its trajectory file is, so attempts do not overwrite each other's files.
func (e *env) outputName(what string) string {
	return core.AttemptName(e.task.TaskID, e.task.SampleIndex) + "." + what
}

// evaluation is the outcome of an attempt's checks.
type evaluation struct {
	// FinalURL and FinalResult: the final page's URL; the finish answer,
	// else the last extract, else the final page's title.
	FinalURL, FinalResult string
	// Aborted: the attempt ended on a failure it could not go on from
	// (the error is the failure; exit aborted, or timeout).
	Aborted bool
	Success bool
	// Reward is the fraction of the checks that passed, or the page's
	// reward; nil without a verifier.
	Reward *float64
	// Verified is whether the checks passed; nil when none ran.
	Verified *bool
	// ErrorType and ErrorMessage are the failure; ErrNone on success.
	ErrorType    core.ErrorType
	ErrorMessage string
	// Flags are the metadata.flags of a success that may not be the
	// agent's work.
	Flags []string
}

func (v *evaluation) fail(et core.ErrorType, msg string) {
	v.Success, v.ErrorType, v.ErrorMessage = false, et, msg
}

// reward sets passed of total checks as the reward (none when total is 0).
func (v *evaluation) reward(passed, total int) {
	v.Reward = nil
	if total > 0 {
		r := float64(passed) / float64(total)
		v.Reward = &r
	}
}

// evaluate decides the attempt from what was performed (last is the last
// step recorded, nil when none) and the task's checks: it succeeded when
// it ended without a fatal error and its verifier, if any, passed. The
// policy never sees what it returns.
func (e *env) evaluate(ctx context.Context, last *core.ExecutionStep) evaluation {
	v := evaluation{FinalURL: e.lastObs.URL}
	switch {
	case e.answer != nil:
		v.FinalResult = *e.answer
	case len(e.extracts) > 0:
		v.FinalResult = e.extracts[len(e.extracts)-1]
	default:
		v.FinalResult = e.lastObs.Title
	}
	v.reward(0, e.c.Checks()) // until the checks pass below
	if e.fatal != nil {
		v.Aborted = true
		v.fail(browser.Classify(e.fatal), e.fatal.Error())
		return v
	}
	if e.c.RewardScript != "" {
		e.pageReward(ctx, &v, last)
		return v
	}
	if last != nil && !last.Success {
		v.fail(last.ErrorType, last.ErrorMessage)
		return v
	}
	if !e.c.HasVerifier() {
		v.Success = true
		return v
	}
	ok, why, _, passed, total := e.verify(ctx)
	v.reward(passed, total)
	v.Verified = &ok
	if !ok {
		v.fail(core.ErrWrongAnswer, why)
		return v
	}
	v.Success = true
	if t := e.c.ExpectedText; t != "" && typedContains(e.typedSoFar(), t) {
		// Found outside the echoes, but the agent typed it: an echo the
		// page changed on the way (cut, escaped, reassembled from pieces)
		// would look the same. The success stands, flagged.
		v.Flags = []string{flagTypedExpectedText}
	}
	return v
}

// pageReward evaluates the task's reward_script on the final page: its
// number is the reward, as is, and success is a reward above 0. The model
// never sees it.
func (e *env) pageReward(ctx context.Context, v *evaluation, last *core.ExecutionStep) {
	no := false
	v.Verified = &no
	same, err := e.s.Eval(ctx, fmt.Sprintf("return window[%q] === true;", e.docMark))
	if err != nil || same != true {
		v.fail(core.ErrWrongAnswer, fmt.Sprintf("the final page (%s) is not the task's page: it was navigated away from or reloaded, so its reward is not the task's", e.lastObs.URL))
		return
	}
	x, err := e.s.Eval(ctx, e.c.RewardScript)
	if err != nil {
		v.fail(core.ErrWrongAnswer, "reward_script failed: "+err.Error())
		return
	}
	var r float64
	switch n := x.(type) {
	case int:
		r = float64(n)
	case float64:
		r = n
	default:
		v.fail(core.ErrWrongAnswer, fmt.Sprintf("reward_script returned %v (%T), not a number", x, x))
		return
	}
	if math.IsNaN(r) || math.IsInf(r, 0) {
		v.fail(core.ErrWrongAnswer, fmt.Sprintf("reward_script returned %v, not a finite number", r))
		return
	}
	v.Reward = &r
	if r <= 0 {
		why := fmt.Sprintf("the page's reward is %v", r)
		if last != nil && !last.Success {
			why += "; the last step failed: " + last.ErrorMessage
		}
		v.fail(core.ErrWrongAnswer, why)
		return
	}
	yes := true
	v.Verified = &yes
	v.Success = true
}

// feedback takes answer as the attempt's answer and returns what the
// model may be told of the checks: "" when they pass (or there are none),
// else which kind of check failed, never what it expects.
func (e *env) feedback(ctx context.Context, answer string) string {
	ans := strings.TrimSpace(answer)
	e.answer = &ans
	if !e.c.HasVerifier() {
		return ""
	}
	if ok, _, fb, _, _ := e.verify(ctx); !ok {
		return fb
	}
	return ""
}

// verify checks expected_text, expected_url, answer and answer_contains,
// each of them, and returns whether all passed, the first failure (with the
// expected values, for the record) and the same failure as the model may
// be told (which check failed, never what it expected: the checks are
// hidden), and how many of how many passed.
func (e *env) verify(ctx context.Context) (ok bool, why, feedback string, passed, total int) {
	answer := ""
	if e.answer != nil {
		answer = strings.TrimSpace(*e.answer)
	}
	check := func(pass bool, fail, tell string) {
		total++
		if pass {
			passed++
		} else if why == "" {
			why, feedback = fail, tell
		}
	}
	if t := e.c.ExpectedText; t != "" {
		// The whole final page, not the observation (which shows a part of
		// a long page); never the answer, nor an echo of what the agent
		// typed.
		page, err := e.s.PageText(ctx)
		switch {
		case err != nil:
			check(false, fmt.Sprintf("expected text %q: the final page could not be read: %v", t, err),
				"the final page could not be read")
		default:
			page += "\n" + strings.Join(e.extracts, "\n")
			rest, echoed := withoutEchoes(page, t, e.typedSoFar())
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
	if u := e.c.ExpectedURL; u != "" {
		check(strings.Contains(e.lastObs.URL, u), fmt.Sprintf("final URL %q does not contain %q", e.lastObs.URL, u),
			"the final page is not the one the task asks for")
	}
	if e.c.Answer != nil {
		want := strings.TrimSpace(*e.c.Answer)
		check(answer == want, fmt.Sprintf("answer %q is not the expected %q", answer, want), "the answer is not the expected one")
	}
	if w := e.c.AnswerContains; w != "" {
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
