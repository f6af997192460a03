package localrun_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// modelTasks are model-driven rollouts (no `code`, no `actions`): code
// tasks checked by tests or expected_output, web tasks on the demo site
// checked by expected_text and expected_url, 4 to 8 attempts each, each
// with its own range of seeds (sampling.seed + k), so that a request's
// seed names its task and attempt.
const modelTasks = `{"task_id": "llm_add", "task_type": "code", "description": "Write add(a, b)", "constraints": {"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"}, "samples": 8, "sampling": {"seed": 100}, "max_steps": 2, "timeout": 60}
{"task_id": "llm_fib", "task_type": "code", "description": "Print the 10th Fibonacci number", "constraints": {"expected_output": "55"}, "samples": 5, "sampling": {"seed": 7}, "max_steps": 2, "timeout": 60}
{"task_id": "llm_form", "task_type": "web", "description": "Send a message as Ada through the contact form", "constraints": {"start_url": "http://demo-site:8765/form", "expected_text": "Thank you, Ada"}, "samples": 4, "sampling": {"seed": 20}, "max_steps": 5, "timeout": 120}
{"task_id": "llm_nav", "task_type": "web", "description": "Open the contact page", "constraints": {"start_url": "http://demo-site:8765/", "expected_url": "/form", "expected_text": "Contact"}, "samples": 4, "sampling": {"seed": 41}, "max_steps": 4, "timeout": 120}
`

// seedModel is the fake model's policy: a request's seed names the task
// (the ranges of modelTasks) and decides whether its answer is right (even
// seeds) or wrong (odd seeds). turn is the number of model turns before
// this request; text renders a tool call for LLM_TOOL_MODE=text.
type seedModel struct{}

// task is the task whose seed range holds seed.
func (seedModel) task(seed int64) string {
	switch {
	case seed >= 100 && seed < 108:
		return "llm_add"
	case seed >= 7 && seed < 12:
		return "llm_fib"
	case seed >= 20 && seed < 24:
		return "llm_form"
	case seed >= 41 && seed < 45:
		return "llm_nav"
	}
	return ""
}

// reward is what the verifiers give attempt seed's answer.
func (m seedModel) reward(seed int64) float64 {
	if seed%2 == 0 {
		return 1
	}
	if m.task(seed) == "llm_nav" { // it stays on the home page, which names "Contact"
		return 0.5
	}
	return 0
}

// action is the tool call of the turn-th model turn (name "" is an answer
// in text: "done").
func (m seedModel) action(seed int64, turn int) (name string, args map[string]string) {
	right := seed%2 == 0
	switch m.task(seed) {
	case "llm_add":
		if turn > 0 {
			return "", nil
		}
		if right {
			return "run_python", map[string]string{"code": "def add(a, b):\n    return a + b\n"}
		}
		return "run_python", map[string]string{"code": "def add(a, b):\n    return a - b\n"}
	case "llm_fib":
		if turn > 0 {
			return "", nil
		}
		if right {
			return "run_python", map[string]string{"code": "a, b = 0, 1\nfor _ in range(10):\n    a, b = b, a + b\nprint(a)\n"}
		}
		return "run_python", map[string]string{"code": "print(54)\n"}
	case "llm_form":
		name := "Ada"
		if !right {
			name = "Bob"
		}
		script := []struct {
			name string
			args map[string]string
		}{
			{"fill", map[string]string{"selector": "#name", "text": name}},
			{"click", map[string]string{"selector": "button[type=submit]"}},
			{"finish", map[string]string{"answer": "sent"}},
		}
		s := script[min(turn, len(script)-1)]
		return s.name, s.args
	case "llm_nav":
		if right && turn == 0 {
			return "click", map[string]string{"selector": `a[href="/form"]`}
		}
		return "finish", map[string]string{"answer": "here"}
	}
	return "", nil
}

// reply answers req: a tool call, natively or in text (a ```python block
// for run_python, a JSON tool call otherwise), on chat or completions.
func (m seedModel) reply(req testsupport.FakeLLMRequest) (int, any) {
	if req.Seed == nil || m.task(*req.Seed) == "" {
		return 400, testsupport.ErrorReply(fmt.Sprintf("seed %v names no task", req.Seed))
	}
	turn := 0
	if req.Completions() {
		turn = strings.Count(req.Prompt, "Assistant:") - 1 // the prompt ends with the cue
	} else {
		for _, msg := range req.Messages {
			if msg.Role == "assistant" {
				turn++
			}
		}
	}
	name, args := m.action(*req.Seed, turn)
	text := req.Completions() || !req.HasField("tools")
	switch {
	case !text && name != "":
		return 200, testsupport.ToolCallReply(fmt.Sprintf("call_%d", turn), name, args)
	case name == "":
		return 200, m.textReply(req, "done")
	case name == "run_python":
		return 200, m.textReply(req, "```python\n"+args["code"]+"```")
	default:
		b, _ := json.Marshal(map[string]any{"tool": name, "arguments": args})
		return 200, m.textReply(req, string(b))
	}
}

func (seedModel) textReply(req testsupport.FakeLLMRequest, text string) map[string]any {
	if req.Completions() {
		return testsupport.CompletionReply(" " + text)
	}
	return testsupport.AnswerReply(text)
}

// TestRolloutsWithAModel runs model-driven code and web tasks of 4 to 8
// attempts through the whole pipeline (as TestRolloutsExample) against the
// fake model of seedModel, whose answers depend on the seed each attempt
// sends: every attempt's file has its sample, the reward its seed
// dictates, an exit_reason and the llm record with seed sampling.seed+k;
// stats --json has the estimator's pass@k on those rewards; the groups
// export has every attempt of each task, its messages those the fake
// server received. It runs three times: tools native on the chat API, then
// LLM_TOOL_MODE=text on chat, then text with LLM_API=completions (where
// the recorded messages render to the prompts received), each giving the
// same verified and failed attempts.
func TestRolloutsWithAModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline three times (about a minute); skipped with -short")
	}
	bins := testsupport.BuildBinaries(t)
	var m seedModel
	for _, tc := range []struct{ mode, api string }{
		{llm.ToolModeNative, llm.APIChat},
		{llm.ToolModeText, llm.APIChat},
		{llm.ToolModeText, llm.APICompletions},
	} {
		t.Run(tc.mode+" "+tc.api, func(t *testing.T) {
			fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, _ int) (int, any) { return m.reply(req) })
			run := runPipeline(t, bins, []byte(modelTasks), []string{"LLM_BASE_URL=" + fake.URL, "LLM_MODEL=fake", "LLM_MAX_RETRIES=1",
				"LLM_TOOL_MODE=" + tc.mode, "LLM_API=" + tc.api})
			if !run.types()[core.TaskCode] || !run.types()[core.TaskWeb] {
				t.Fatalf("the tasks lack code or web: %v", run.types())
			}
			reqs := fake.Requests()
			for i, r := range reqs {
				if r.Completions() != (tc.api == llm.APICompletions) || r.HasField("tools") != (tc.mode == llm.ToolModeNative) ||
					r.Completions() && r.HasField("messages") {
					t.Errorf("request %d went to %s (tools %v) in tool mode %s", i, r.Path, r.HasField("tools"), tc.mode)
				}
			}
			trs, outcomes := checkModelAttempts(t, run, m, fake.URL, tc.mode, tc.api)
			checkRequestsRecorded(t, trs, reqs)
			if tc.api == llm.APIChat {
				checkGroupsSent(t, run, trs, outcomes, reqs)
			} else {
				checkPromptsSent(t, trs, reqs)
				run.groups(t, outcomes)
			}
		})
	}
}

// checkRequestsRecorded: every request the server received is a model
// call of the attempt its seed names, sent with the sampling parameters of
// that attempt's llm record: a task of several samples without a
// temperature samples at llm.DefaultSampledTemperature.
func checkRequestsRecorded(t *testing.T, trs map[attemptKey]*core.Trajectory, reqs []testsupport.FakeLLMRequest) {
	t.Helper()
	bySeed := map[int64]*core.Trajectory{}
	for _, tr := range trs {
		bySeed[*tr.LLM.Seed] = tr
		if tr.LLM.Temperature == nil || *tr.LLM.Temperature != llm.DefaultSampledTemperature {
			t.Errorf("%s attempt %d: llm record %s, want temperature %v", tr.TaskID, tr.SampleIndex, mustJSON(tr.LLM), llm.DefaultSampledTemperature)
		}
	}
	calls := map[int64]int{}
	for i, r := range reqs {
		if r.Seed == nil || bySeed[*r.Seed] == nil {
			t.Errorf("request %d: seed %v names no attempt", i, r.Seed)
			continue
		}
		tr := bySeed[*r.Seed]
		calls[*r.Seed]++
		if got, want := mustJSON([]any{r.Model, r.Temperature, r.TopP, r.MaxTokens}), mustJSON([]any{tr.LLM.Model, tr.LLM.Temperature, tr.LLM.TopP, tr.LLM.MaxTokens}); got != want {
			t.Errorf("request %d (%s attempt %d): model, temperature, top_p, max_tokens %s; the llm record says %s", i, tr.TaskID, tr.SampleIndex, got, want)
		}
	}
	for seed, tr := range bySeed {
		if calls[seed] != len(tr.ModelCalls) {
			t.Errorf("%s attempt %d: %d requests received, %d model calls recorded", tr.TaskID, tr.SampleIndex, calls[seed], len(tr.ModelCalls))
		}
	}
}

// lastRequest is the last request with the seed of tr's attempt (seeds
// name attempts: seedModel).
func lastRequest(reqs []testsupport.FakeLLMRequest, tr *core.Trajectory) *testsupport.FakeLLMRequest {
	var last *testsupport.FakeLLMRequest
	for i := range reqs {
		if reqs[i].Seed != nil && *reqs[i].Seed == *tr.LLM.Seed {
			last = &reqs[i]
		}
	}
	return last
}

// checkGroupsSent: in the groups export, each attempt's prompt and
// completion are what its last chat request sent, byte for byte, then the
// model's reply; the group's tools are those sent ([] when none were).
func checkGroupsSent(t *testing.T, run *pipelineRun, trs map[attemptKey]*core.Trajectory, outcomes map[string][2]int, reqs []testsupport.FakeLLMRequest) {
	t.Helper()
	groups := run.groups(t, outcomes)
	compared := 0
	for id, g := range groups {
		for _, a := range g.Attempts {
			tr := trs[attemptKey{id, a.SampleIndex}]
			if tr == nil {
				continue
			}
			if !a.Recorded || a.ExitReason != string(tr.ExitReason) || a.Reward == nil || *a.Reward != *tr.Reward {
				t.Errorf("group %s attempt %d: recorded %v, exit_reason %s, reward %v; the trajectory's %s, %v",
					id, a.SampleIndex, a.Recorded, a.ExitReason, a.Reward, tr.ExitReason, *tr.Reward)
			}
			last := lastRequest(reqs, tr)
			if last == nil {
				t.Errorf("%s attempt %d: the server received no request with seed %d", id, a.SampleIndex, *tr.LLM.Seed)
				continue
			}
			sent, tools := last.RawMessages()
			prompt := g.Prompt
			if a.Prompt != nil {
				prompt = a.Prompt
			}
			msgs := append(append([]json.RawMessage(nil), prompt...), a.Completion...)
			if len(msgs) != len(sent)+1 {
				t.Errorf("group %s attempt %d: %d messages; the last request sent %d, then the reply", id, a.SampleIndex, len(msgs), len(sent))
				continue
			}
			for i, s := range sent {
				if !bytes.Equal(msgs[i], s) {
					t.Errorf("group %s attempt %d message %d\n%s\nthe server received\n%s", id, a.SampleIndex, i, msgs[i], s)
				}
			}
			compared++
			if tools == nil { // text mode: none sent; the openai record's tools are then empty
				tools = json.RawMessage("[]")
			}
			if !bytes.Equal(g.Tools, tools) {
				t.Errorf("group %s: tools %s, the server received %s", id, g.Tools, tools)
			}
			if len(sent) < 2 || !strings.Contains(string(sent[1]), tr.Description) {
				t.Errorf("%s attempt %d: the user message of %s lacks the task", id, a.SampleIndex, sent)
			}
		}
	}
	if compared != run.attempts {
		t.Errorf("the messages of %d attempts compared with the requests, want all %d", compared, run.attempts)
	}
}

// checkPromptsSent: each attempt's recorded messages render to the prompt
// of its last completions request, which is its last model call's; and
// some attempts are verified.
func checkPromptsSent(t *testing.T, trs map[attemptKey]*core.Trajectory, reqs []testsupport.FakeLLMRequest) {
	t.Helper()
	verified := 0
	for key, tr := range trs {
		if tr.Success {
			verified++
		}
		// The recorded messages render to the prompt of the attempt's last call.
		last := lastRequest(reqs, tr)
		if last == nil || len(tr.Messages) < 2 {
			t.Errorf("%v: no request with seed %d, or %d messages", key, *tr.LLM.Seed, len(tr.Messages))
			continue
		}
		var msgs []llm.Message
		for _, raw := range tr.Messages[:len(tr.Messages)-1] {
			var msg llm.Message
			if err := json.Unmarshal(raw, &msg); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, msg)
		}
		if got := llm.RenderPrompt(msgs); got != last.Prompt {
			t.Errorf("%v: the recorded messages render to\n%q\nthe server received\n%q", key, got, last.Prompt)
		}
		if n := len(tr.ModelCalls); n == 0 || tr.ModelCalls[n-1].Prompt != last.Prompt {
			t.Errorf("%v: the last model call's prompt is not the one the server received", key)
		}
	}
	if verified == 0 {
		t.Error("no verified trajectory in text mode over completions")
	}
}

type attemptKey struct {
	id string
	k  int
}

// checkModelAttempts checks each attempt of run against the model m: the
// reward its seed dictates, the exit reason that goes with it, the llm
// record (endpoint, model, tool mode, API, seed sampling.seed+k); and
// stats --json against the pass@k of the outcomes the seeds dictate,
// computed from the seeds alone. It returns the trajectories and those
// outcomes.
func checkModelAttempts(t *testing.T, run *pipelineRun, m seedModel, base, mode, api string) (map[attemptKey]*core.Trajectory, map[string][2]int) {
	t.Helper()
	endpoint := base + map[string]string{llm.APIChat: "/chat/completions", llm.APICompletions: "/completions"}[api]
	trs := map[attemptKey]*core.Trajectory{}
	outcomes, byType := run.checkAttempts(t, func(tk core.TaskSpec, k int, tr *core.Trajectory) {
		seed := *tk.Sampling.Seed + int64(k)
		if tr.LLM == nil || tr.LLM.Seed == nil || *tr.LLM.Seed != seed || tr.LLM.Endpoint != endpoint || tr.LLM.Model != "fake" ||
			tr.LLM.ToolMode != mode || tr.LLM.API != api {
			t.Errorf("%s attempt %d: llm record %s, want seed %d, endpoint %s, tool mode %s, api %s", tk.TaskID, k, mustJSON(tr.LLM), seed, endpoint, mode, api)
			return
		}
		if m.task(seed) != tk.TaskID {
			t.Fatalf("seed %d of %s attempt %d is not in its range of seedModel", seed, tk.TaskID, k)
		}
		if want := m.reward(seed); *tr.Reward != want {
			t.Errorf("%s attempt %d (seed %d): reward %v, want %v (%s)", tk.TaskID, k, seed, *tr.Reward, want, tr.ErrorMessage)
		}
		wantExit := core.ExitFinished
		if tk.TaskType == core.TaskCode {
			// A wrong program is never accepted: the model's "done" is
			// answered with the failed check until its turns run out,
			// one step of the two it may take spent: max_turns.
			wantExit = core.ExitAnswered
			if *tr.Reward != 1 {
				wantExit = core.ExitMaxTurns
			}
		}
		if tr.ExitReason != wantExit {
			t.Errorf("%s attempt %d (seed %d): exit_reason %s, want %s (%s)", tk.TaskID, k, seed, tr.ExitReason, wantExit, tr.ErrorMessage)
		}
		if len(tr.Messages) == 0 || len(tr.ModelCalls) == 0 {
			t.Errorf("%s attempt %d: %d messages, %d model calls recorded", tk.TaskID, k, len(tr.Messages), len(tr.ModelCalls))
		}
		trs[attemptKey{tk.TaskID, k}] = tr
	})
	t.Logf("attempts and successes per task: %v", outcomes)

	want := map[string][2]int{}
	wantByType := map[core.TaskType]map[string][2]int{}
	for _, tk := range run.tasks {
		nc := [2]int{tk.Samples, 0}
		for k := range tk.Samples {
			if m.reward(*tk.Sampling.Seed+int64(k)) == 1 {
				nc[1]++
			}
		}
		if nc[1] == 0 || nc[1] == nc[0] {
			t.Errorf("task %s: the seeds give %d successes of %d; want a mix", tk.TaskID, nc[1], nc[0])
		}
		want[tk.TaskID] = nc
		if wantByType[tk.TaskType] == nil {
			wantByType[tk.TaskType] = map[string][2]int{}
		}
		wantByType[tk.TaskType][tk.TaskID] = nc
	}
	if mustJSON(outcomes) != mustJSON(want) || mustJSON(byType) != mustJSON(wantByType) {
		t.Errorf("outcomes %v (by type %v), the seeds dictate %v (%v)", outcomes, byType, want, wantByType)
	}
	run.checkStats(t, want, wantByType)
	return trs, want
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
