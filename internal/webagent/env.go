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
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/rollout"
)

// Environment is the web environment of one attempt of a task
// (rollout.Environment): a page of its own, opened on the task's start
// page and prepared by its scripts (Start), one action at a time as a
// recorded step with the page observed after it (Step), the task's own
// checks on the final page, hidden from the policy (Evaluate), and the page
// given back (Close). Agent.Attempt makes one.
type Environment struct {
	a    *Agent
	task core.TaskSpec
	c    Constraints
	s    Page

	steps    int // steps performed (the start page's included)
	last     *core.ExecutionStep
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
	// vision is set when a model chooses the actions with Agent.Vision:
	// every step is screenshot, and image is the latest, for the model.
	vision    bool
	image     []byte
	imageNote string
	// authored is set while the step's action is the task's own, the
	// rules' or a cached sequence's: what they type is the task's (its
	// actions, its description) or passed the checks before, not a
	// model's.
	authored bool
	// docMark is a random window property Start set on the start page
	// of a task with a reward_script: the reward is the page's only while
	// the final page is that document (an agent that navigates to another
	// page, even an easier task of the same site, earns nothing there).
	docMark string
}

var _ rollout.Cacheable = (*Environment)(nil)

// scripted are the task's own actions (constraints.actions) for
// rollout.Attempt.Scripted; nil when it has none.
func (e *Environment) scripted() []rollout.Action {
	if len(e.c.Actions) == 0 {
		return nil
	}
	return inputs(e.c.Actions)
}

// inputs are as as the loop's actions.
func inputs(as []Action) []rollout.Action {
	out := make([]rollout.Action, len(as))
	for i, a := range as {
		out[i] = rollout.Action{Input: a}
	}
	return out
}

// Start acquires a page, opens the start page (the first step, marked
// "initial") and runs the task's setup_script and instruction_script on
// it; the start step's observation is then the page after the setup
// (marked "setup": true). A task whose scripts are invalid is Invalid; a
// start page that failed (blocked, the browser died) is the End, as is no
// browser slot within the budget. The error is a system error: no browser
// session could be opened.
func (e *Environment) Start(ctx context.Context, opts rollout.StartOptions) (rollout.Start, error) {
	s, err := e.a.Pages.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return rollout.Start{Result: rollout.Result{Done: true,
				End: &rollout.Failure{Type: core.ErrTimeout, Message: "no browser slot became free within the task's timeout"}}}, nil
		}
		return rollout.Start{}, fmt.Errorf("open browser session for task %s: %w", e.task.TaskID, err)
	}
	e.s = s
	if e.a.ScreenshotDir != "" {
		s.KeepDownloads(e.a.ScreenshotDir, func(n int, suggested string) string {
			return core.DownloadFileName(e.task.TaskID, e.task.SampleIndex, n, suggested)
		})
	}
	var steps []core.ExecutionStep
	if e.c.StartURL != "" {
		first := e.do(ctx, Action{Action: "goto", URL: e.c.StartURL}, true)
		if e.fatal == nil {
			if why := e.prepare(ctx, &first); why != "" {
				return invalidStart([]core.ExecutionStep{first}, why), nil
			}
		}
		steps = append(steps, first)
	} else if e.c.SetupScript != "" || e.c.InstructionScript != "" || e.c.RewardScript != "" {
		return invalidStart(nil, "setup_script, instruction_script and reward_script need a start_url to run on"), nil
	}
	st := rollout.Start{Result: rollout.Result{Steps: steps}}
	if e.instruction != "" {
		st.Metadata = core.Metadata{core.MetaPageInstruction: e.instruction}
	}
	if e.fatal != nil {
		st.Done, st.End = true, e.end()
		return st, nil
	}
	e.vision = opts.Source == rollout.SourceLLM && e.a.Vision && e.a.ScreenshotDir != ""
	st.Space = rollout.ActionSpace{Instructions: prompt.WebSystem, Tools: prompt.WebTools}
	st.Observation = e.firstObservation(ctx, steps)
	return st, nil
}

// invalidStart is the start of an invalid task.
func invalidStart(steps []core.ExecutionStep, why string) rollout.Start {
	return rollout.Start{Invalid: true, Result: rollout.Result{Steps: steps, Done: true,
		End: &rollout.Failure{Type: core.ErrSystem, Message: why}}}
}

// end is the failure that ended the attempt: the fatal error.
func (e *Environment) end() *rollout.Failure {
	return &rollout.Failure{Type: browser.Classify(e.fatal), Message: e.fatal.Error()}
}

// prepare runs the task's scripts on the start page (see Start), first
// being the start step; it returns why the task is invalid, "" when it is
// not (a browser that died is e.fatal).
func (e *Environment) prepare(ctx context.Context, first *core.ExecutionStep) string {
	if e.c.SetupScript == "" && e.c.InstructionScript == "" && e.c.RewardScript == "" {
		return ""
	}
	fail := func(what string, err error) string {
		if browser.Classify(err) == core.ErrBrowser {
			e.fatal = err
			return ""
		}
		return what + " failed: " + err.Error()
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
		return "" // the start page is as observed
	}
	obs, err := e.s.Observe(ctx)
	if err != nil {
		e.fatal = err
		return ""
	}
	e.lastObs = obs
	first.Observation = render(obs, "", false)
	first.ActionParams["setup"] = true
	return ""
}

// Close gives the page back.
func (e *Environment) Close() error {
	if e.s == nil {
		return nil
	}
	return e.s.Close()
}

// Step performs one action: a model's tool call, the environment's own
// Action (Input), or a model's answer, which is accepted (Done) when the
// task's checks pass and answered with what the model may be told of them
// otherwise. An action performed is one step, with the page observed after
// it (and, for a model with vision, its screenshot). A finish ends the
// attempt, as does a step that failed when the model did not choose it
// (the task's actions, a cached sequence, the rules stop at their first
// failure); a dead browser or a blocked navigation is the End.
func (e *Environment) Step(ctx context.Context, ra rollout.Action) (rollout.Result, error) {
	var a Action
	switch {
	case ra.Answer != nil:
		if fb := e.feedback(ctx, *ra.Answer); fb != "" {
			return rollout.Result{Observation: rollout.Observation{Text: "Verification failed: " + fb + ". Continue, then call finish with the answer."}}, nil
		}
		return rollout.Result{Done: true}, nil
	case ra.Call != nil:
		var err error
		if a, err = actionFromCall(*ra.Call); err != nil {
			return rollout.Result{Observation: rollout.Observation{Text: "error: " + err.Error()}}, nil
		}
	default:
		in, ok := ra.Input.(Action)
		if !ok {
			return rollout.Result{}, fmt.Errorf("web task %s: action %T is not a web action", e.task.TaskID, ra.Input)
		}
		a = in
	}
	// Only the sources that type the task's own text are trusted; any
	// other (a model, a caller that did not say) is treated as an agent.
	switch ra.Source {
	case rollout.SourceScripted, rollout.SourceCache, rollout.SourceRules:
		e.authored = true
	default:
		e.authored = false
	}
	step := e.do(ctx, a, false)
	res := rollout.Result{Steps: []core.ExecutionStep{step}}
	res.Observation.Text = step.Observation
	if step.ErrorType != core.ErrNone {
		res.Observation.Text = fmt.Sprintf("error: %s: %s\n\n%s", step.ErrorType, step.ErrorMessage, step.Observation)
	}
	res.Observation.Image, res.Observation.ImageNote, _ = e.takeImage()
	switch {
	case e.fatal != nil:
		res.Done, res.End = true, e.end()
	case a.Action == "finish" || !step.Success && e.authored:
		res.Done = true
	}
	return res, nil
}

// do performs one action as a step (initial: the start page's), observes
// the page after it, and returns the step.
func (e *Environment) do(ctx context.Context, a Action, initial bool) core.ExecutionStep {
	started := time.Now()
	e.steps++
	params := a.Params()
	if initial {
		params["initial"] = true
	}
	if err := a.Validate(); err != nil {
		step := core.ExecutionStep{ActionType: core.ActionBrowser, ActionParams: params,
			ErrorType: core.ErrRuntime, ErrorMessage: err.Error(), Timestamp: core.UnixSeconds(started)}
		e.last = &step
		return step
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
	e.last = &step
	return step
}

// screenshot saves the viewport as the file of step n (from 1) and names it
// in the step; with vision it is also the image for the model's next
// request.
func (e *Environment) screenshot(ctx context.Context, step *core.ExecutionStep, n int) {
	if e.a.ScreenshotDir == "" {
		return
	}
	name := core.ScreenshotFileName(e.task.TaskID, e.task.SampleIndex, n)
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
func (e *Environment) takeImage() (png []byte, note string, ok bool) {
	png, note = e.image, e.imageNote
	e.image, e.imageNote = nil, ""
	return png, note, png != nil
}

// Evaluate decides the attempt from the final page and the task's checks,
// none of which the policy sees (a model is told only Step's feedback):
// expected_text on the whole final page outside what the agent typed,
// expected_url, answer, answer_contains, each a check of the reward; or
// the task's reward_script, whose number on the task's own page is the
// reward. After an end, or a last step that failed, the checks do not run.
func (e *Environment) Evaluate(ctx context.Context, end *rollout.Failure) (rollout.Evaluation, error) {
	if e.s == nil {
		return rollout.Evaluation{}, nil // no page was opened
	}
	v := rollout.Evaluation{Checked: e.c.HasVerifier(), Total: e.c.Checks(),
		Metadata: core.Metadata{core.MetaFinalURL: e.lastObs.URL}}
	switch {
	case e.answer != nil:
		v.FinalResult = *e.answer
	case len(e.extracts) > 0:
		v.FinalResult = e.extracts[len(e.extracts)-1]
	default:
		v.FinalResult = e.lastObs.Title
	}
	if end != nil {
		return v, nil
	}
	if e.c.RewardScript != "" {
		e.pageReward(ctx, &v)
		return v, nil
	}
	if l := e.last; l != nil && !l.Success {
		v.Failure = &rollout.Failure{Type: l.ErrorType, Message: l.ErrorMessage}
		return v, nil
	}
	if !v.Checked {
		return v, nil
	}
	ok, why, feedback, passed, _ := e.verify(ctx)
	v.Verified, v.Passed, v.Message, v.Feedback = &ok, passed, why, feedback
	if ok && e.c.ExpectedText != "" && typedContains(e.typedSoFar(), e.c.ExpectedText) {
		// Found outside the echoes, but the agent typed it: an echo the
		// page changed on the way (cut, escaped, reassembled from pieces)
		// would look the same. The success stands, flagged.
		v.Metadata[core.MetaFlags] = []string{flagTypedExpectedText}
	}
	return v, nil
}

// pageReward evaluates the task's reward_script on the final page: its
// number is the reward, as is, and success is a reward above 0. The model
// never sees it.
func (e *Environment) pageReward(ctx context.Context, v *rollout.Evaluation) {
	v.Verified = new(false)
	same, err := e.s.Eval(ctx, fmt.Sprintf("return window[%q] === true;", e.docMark))
	if err != nil || same != true {
		v.Message = fmt.Sprintf("the final page (%s) is not the task's page: it was navigated away from or reloaded, so its reward is not the task's", e.lastObs.URL)
		return
	}
	x, err := e.s.Eval(ctx, e.c.RewardScript)
	if err != nil {
		v.Message = "reward_script failed: " + err.Error()
		return
	}
	var r float64
	switch n := x.(type) {
	case int:
		r = float64(n)
	case float64:
		r = n
	default:
		v.Message = fmt.Sprintf("reward_script returned %v (%T), not a number", x, x)
		return
	}
	if math.IsNaN(r) || math.IsInf(r, 0) {
		v.Message = fmt.Sprintf("reward_script returned %v, not a finite number", r)
		return
	}
	v.Reward = &r
	if r <= 0 {
		v.Message = fmt.Sprintf("the page's reward is %v", r)
		if l := e.last; l != nil && !l.Success {
			v.Message += "; the last step failed: " + l.ErrorMessage
		}
		return
	}
	*v.Verified = true
}

// verify checks expected_text, expected_url, answer and answer_contains,
// each of them, and returns whether all passed, the first failure (with the
// expected values, for the record) and the same failure as the model may
// be told (which check failed, never what it expected: the checks are
// hidden), and how many of how many passed.
func (e *Environment) verify(ctx context.Context) (ok bool, why, feedback string, passed, total int) {
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
