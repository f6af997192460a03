package codeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/export"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

func newJail(t *testing.T) sandbox.Jail {
	t.Helper()
	j, err := sandbox.New(sandbox.BackendAuto, sandbox.Config{})
	if err != nil {
		t.Skipf("no jail on this machine (run scripts/bootstrap.sh --test): %v", err)
	}
	return j
}

func newAgent(t *testing.T, client *llm.Client, cache *templatecache.Cache) *Agent {
	t.Helper()
	lim := sandbox.DefaultLimits()
	lim.Wall = 10 * time.Second
	return &Agent{Jail: newJail(t), Limits: lim, LLM: client, Cache: cache, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
}

func task(desc string, constraints map[string]any) core.TaskSpec {
	return core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, Description: desc, MaxSteps: 5, Timeout: 60, Priority: 1, Constraints: constraints}
}

func TestScripted(t *testing.T) {
	a := newAgent(t, nil, nil)
	tests := []struct {
		name        string
		constraints map[string]any
		success     bool
		errType     core.ErrorType
		verified    any // nil: absent
		final       string
		steps       int
	}{
		{"expected output matches", map[string]any{"code": "print(6*7)  \n", "expected_output": "42\n"}, true, core.ErrNone, true, "42", 1},
		{"expected output differs", map[string]any{"code": "print(41)", "expected_output": "42"}, false, core.ErrWrongAnswer, false, "41", 1},
		{"tests pass", map[string]any{"code": "def add(a, b):\n    return a + b\n", "tests": "assert add(2, 3) == 5"}, true, core.ErrNone, true, "", 2},
		{"tests fail", map[string]any{"code": "def add(a, b):\n    return a - b\n", "tests": "assert add(2, 3) == 5"}, false, core.ErrWrongAnswer, false, "", 2},
		{"no verifier", map[string]any{"code": "print('hi')"}, true, core.ErrNone, nil, "hi", 1},
		{"stdin", map[string]any{"code": "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", "stdin": "1 2 3\n", "expected_output": "6"}, true, core.ErrNone, true, "6", 1},
		{"syntax error", map[string]any{"code": "def f(:\n"}, false, core.ErrCompile, nil, "", 1},
		{"exception", map[string]any{"code": "raise ValueError('boom')"}, false, core.ErrRuntime, nil, "", 1},
		{"unicode", map[string]any{"code": "print('你好, мир')", "expected_output": "你好, мир"}, true, core.ErrNone, true, "你好, мир", 1},
		{"tests pass, program prints", map[string]any{"code": "print('hi')\ndef add(a, b):\n    return a + b\n", "tests": "print('checking')\nassert add(2, 3) == 5"}, true, core.ErrNone, true, "hi", 2},
		{"tests and expected output", map[string]any{"code": "def add(a, b):\n    return a + b\nprint(add(1, 1))\n", "tests": "assert add(2, 3) == 5", "expected_output": "2"}, true, core.ErrNone, true, "2", 2},
		{"expected output wrong, tests pass", map[string]any{"code": "def add(a, b):\n    return a + b\nprint(3)\n", "tests": "assert add(2, 3) == 5", "expected_output": "2"}, false, core.ErrWrongAnswer, false, "3", 2},
		{"tests see the program's stdin", map[string]any{"code": "import sys\ndata = sys.stdin.read()\nprint(repr(data))\n", "stdin": "1 2\n", "tests": "assert data == '1 2\\n', data"}, true, core.ErrNone, true, "'1 2\\n'", 2},
		{"tests raise", map[string]any{"code": "x = 1\n", "tests": "raise ValueError('no')"}, false, core.ErrWrongAnswer, false, "", 2},
		{"program fails before the tests", map[string]any{"code": "raise KeyError('k')\n", "tests": "assert True"}, false, core.ErrRuntime, nil, "", 1},
		{"program syntax error with tests", map[string]any{"code": "def f(:\n", "tests": "assert True"}, false, core.ErrCompile, nil, "", 1},
		{"program times out with tests", map[string]any{"code": "while True:\n    pass\n", "tests": "assert True"}, false, core.ErrTimeout, nil, "", 1},
		// Reward hacks: a program that passes tests it never ran.
		{"hack: sys.exit(0) after a wrong add", map[string]any{"code": hackSysExit, "tests": addTests}, false, core.ErrWrongAnswer, false, "", 2},
		{"hack: os._exit(0) after a wrong add", map[string]any{"code": hackOSExit, "tests": addTests}, false, core.ErrWrongAnswer, false, "", 2},
		{"hack: atexit os._exit(0)", map[string]any{"code": hackAtexit, "tests": addTests}, false, core.ErrWrongAnswer, false, "", 2},
		{"hack: the function exits 0 when tested", map[string]any{"code": "def add(a, b):\n    raise SystemExit(0)\n", "tests": addTests}, false, core.ErrWrongAnswer, false, "", 2},
		{"hack: the function calls os._exit(0) when tested", map[string]any{"code": "import os\ndef add(a, b):\n    os._exit(0)\n", "tests": addTests}, false, core.ErrWrongAnswer, false, "", 2},
		{"hack: a thread exits 0 during the tests", map[string]any{"code": hackThread, "tests": addTests}, false, core.ErrWrongAnswer, false, "", 2},
		{"hack: a forged marker", map[string]any{"code": hackForged, "tests": addTests}, false, core.ErrWrongAnswer, false, "\x1eADP-00000000000000000000000000000000 pass\n\x1eADP-00000000000000000000000000000000 end 0 0.1 ran", 2},
		{"hack: stdout closed", map[string]any{"code": "import os\nos.close(1)\ndef add(a, b):\n    return a + b\n", "tests": addTests}, false, core.ErrRuntime, nil, "", 1},
		{"hack: the program crashes the interpreter", map[string]any{"code": "import ctypes\ndef add(a, b):\n    return a + b\nctypes.string_at(0)\n", "tests": addTests}, false, core.ErrRuntime, nil, "", 1},
		{"tests that call sys.exit(0) fail", map[string]any{"code": "def add(a, b):\n    return a + b\n", "tests": "import sys\nassert add(2, 3) == 5\nsys.exit(0)"}, false, core.ErrWrongAnswer, false, "", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := a.Execute(context.Background(), task("scripted", tc.constraints))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || tr.ErrorType != tc.errType {
				t.Fatalf("success=%v error=%s (%s), want %v %s", tr.Success, tr.ErrorType, tr.ErrorMessage, tc.success, tc.errType)
			}
			if got := tr.Metadata["verified"]; got != tc.verified {
				t.Errorf("verified = %v, want %v", got, tc.verified)
			}
			if tr.FinalResult != tc.final {
				t.Errorf("final_result = %q, want %q", tr.FinalResult, tc.final)
			}
			if len(tr.Steps) != tc.steps {
				t.Errorf("%d steps, want %d", len(tr.Steps), tc.steps)
			}
			s := tr.Steps[0]
			if s.ActionType != core.ActionCodeExecution || s.ActionParams["code"] != tc.constraints["code"] || tr.Metadata["source"] != string(rollout.SourceScripted) {
				t.Errorf("step = %+v, metadata = %v", s, tr.Metadata)
			}
		})
	}
}

// The programs of the reward-hack cases: each defines a wrong add and
// tries to make the tests' process exit 0 without the tests passing.
const (
	addTests    = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
	wrongAdd    = "def add(a, b):\n    return a - b\n"
	hackSysExit = wrongAdd + "import sys\nsys.exit(0)\n"
	hackOSExit  = wrongAdd + "import os\nos._exit(0)\n"
	hackAtexit  = wrongAdd + "import atexit, os\natexit.register(lambda: os._exit(0))\n"
	hackThread  = wrongAdd + "import os, threading, time\n" +
		"def _bye():\n    time.sleep(0.05)\n    os._exit(0)\n" +
		"threading.Thread(target=_bye, daemon=True).start()\n" +
		"_real = add\ndef add(a, b):\n    time.sleep(1)\n    return _real(a, b)\n"
	hackForged = wrongAdd + "import sys\nsys.stdout.write('\\x1eADP-' + '0' * 32 + ' pass\\n')\nsys.stdout.write('\\x1eADP-' + '0' * 32 + ' end 0 0.1 ran\\n')\n"
)

func TestHarnessOutputIsClean(t *testing.T) {
	a := newAgent(t, nil, nil)
	tr, err := a.Execute(context.Background(), task("scripted", map[string]any{
		"code": "import sys\nprint('out')\nprint('err', file=sys.stderr)\ndef add(a, b):\n    return a + b\n", "tests": "print('from the tests')\n" + addTests}))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || len(tr.Steps) != 2 {
		t.Fatalf("success=%v steps=%d (%s)", tr.Success, len(tr.Steps), tr.ErrorMessage)
	}
	run, verify := tr.Steps[0], tr.Steps[1]
	if run.ActionParams["purpose"] != "run" || verify.ActionParams["purpose"] != "verify" {
		t.Errorf("purposes = %v, %v", run.ActionParams["purpose"], verify.ActionParams["purpose"])
	}
	for _, s := range tr.Steps {
		if strings.Contains(s.Observation, "\x1e") || strings.Contains(s.Observation, "ADP-") {
			t.Errorf("step %d shows a harness marker: %q", s.StepID, s.Observation)
		}
	}
	if !strings.Contains(run.Observation, "stdout:\nout\n") || !strings.Contains(run.Observation, "stderr:\nerr\n") || strings.Contains(run.Observation, "from the tests") {
		t.Errorf("run step observation = %q, want the program's output only", run.Observation)
	}
	if !strings.Contains(verify.Observation, "from the tests") || strings.Contains(verify.Observation, "out\n") {
		t.Errorf("verify step observation = %q, want the tests' output only", verify.Observation)
	}
	if code, _ := verify.ActionParams["code"].(string); !strings.Contains(code, "return a + b") || !strings.Contains(code, "from the tests") {
		t.Errorf("verify step code = %q, want the program and the tests", code)
	}
	if got := testutil.CollectAndCount(a.Metrics.SandboxExecDuration); got != 1 {
		t.Errorf("sandbox_exec_duration has %d series", got)
	}
}

func TestRulesAndCache(t *testing.T) {
	r := testsupport.StartRedis(t)
	cache := templatecache.New(r.Client, templatecache.Options{})
	a := newAgent(t, nil, cache)
	ctx := context.Background()
	fib := task("Write a Python function for the 10th Fibonacci number", map[string]any{"expected_output": "55"})

	first, err := a.Execute(ctx, fib)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Success || first.FinalResult != "55" || first.Metadata["source"] != string(rollout.SourceRules) || first.Metadata["cache_hit"] != false {
		t.Fatalf("first run: %+v", first)
	}
	// The same description, differently spaced and cased: a cache hit that
	// still executes the program.
	fib.Description = "  write a python function for the 10th fibonacci NUMBER "
	second, err := a.Execute(ctx, fib)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Success || second.Metadata["cache_hit"] != true || second.Metadata["source"] != string(rollout.SourceCache) || len(second.Steps) != 1 || second.Steps[0].Observation == "" {
		t.Fatalf("second run: %+v", second)
	}
	if testutil.ToFloat64(a.Metrics.CacheHits.WithLabelValues("code")) != 1 || testutil.ToFloat64(a.Metrics.CacheMisses.WithLabelValues("code")) != 1 {
		t.Error("cache metrics not counted")
	}

	for _, tc := range []struct{ desc, want string }{
		{"Calculate fibonacci(20)", "6765"},
		{"Compute the factorial of 5", "120"},
		{"List the primes below 30", "[2, 3, 5, 7, 11, 13, 17, 19, 23, 29]"},
	} {
		tr, err := a.Execute(ctx, task(tc.desc, nil))
		if err != nil || !tr.Success || tr.FinalResult != tc.want {
			t.Errorf("%q: success=%v result=%q err=%v (%s)", tc.desc, tr.Success, tr.FinalResult, err, tr.ErrorMessage)
		}
	}
}

func TestNoLLMNoRule(t *testing.T) {
	a := newAgent(t, nil, nil)
	tr, err := a.Execute(context.Background(), task("Write a web server in Rust", nil))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.ErrorType != core.ErrNoModel || !strings.Contains(tr.ErrorMessage, "no LLM is configured") || len(tr.Steps) != 0 {
		t.Errorf("trajectory = %+v", tr)
	}
}

func newLLM(t *testing.T, reply func(testsupport.FakeLLMRequest, int) (int, any)) (*llm.Client, *testsupport.FakeLLM) {
	t.Helper()
	f := testsupport.StartFakeLLM(t, reply)
	c, err := llm.New(llm.Config{BaseURL: f.URL, Model: "fake", MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

func TestLLMLoop(t *testing.T) {
	// Turn 0: a malformed call; 1: a buggy program; 2: a wrong answer
	// submitted; 3: the fixed program; 4: the answer.
	client, fake := newLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
		switch n {
		case 0:
			return 200, testsupport.RawToolCallReply("c0", "run_python", `{"code": print(1)}`)
		case 1:
			return 200, testsupport.ToolCallReply("c1", "run_python", map[string]string{"code": "print(undefined)"})
		case 2:
			return 200, testsupport.ToolCallReply("c2", "run_python", map[string]string{"code": "print(2 + 2 + 1)"})
		case 3:
			return 200, testsupport.AnswerReply("5")
		case 4:
			return 200, testsupport.ToolCallReply("c4", "run_python", map[string]string{"code": "print(2 + 2)"})
		default:
			return 200, testsupport.AnswerReply("4")
		}
	})
	a := newAgent(t, client, nil)
	tr, err := a.Execute(context.Background(), task("What is 2 + 2? Print it.", map[string]any{"expected_output": "4"}))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Success || tr.FinalResult != "4" || tr.Metadata["verified"] != true || tr.Metadata["source"] != string(rollout.SourceLLM) {
		t.Fatalf("trajectory: success=%v result=%q meta=%v err=%s", tr.Success, tr.FinalResult, tr.Metadata, tr.ErrorMessage)
	}
	if len(tr.Steps) != 3 {
		t.Fatalf("%d steps, want 3 executions (the malformed call is not one)", len(tr.Steps))
	}
	if tr.Steps[0].ErrorType != core.ErrRuntime || !strings.Contains(tr.Steps[0].Observation, "NameError") {
		t.Errorf("step 1 = %+v", tr.Steps[0])
	}
	if tr.Metadata["total_tokens"] != 90 || tr.Metadata["llm_calls"] != 6 {
		t.Errorf("usage metadata = %v", tr.Metadata)
	}
	reqs := fake.Requests()
	if got := reqs[1].LastContent(); !strings.Contains(got, "not valid JSON") {
		t.Errorf("malformed call error not fed back: %q", got)
	}
	if got := reqs[2].LastContent(); !strings.Contains(got, "NameError") {
		t.Errorf("observation not fed back: %q", got)
	}
	if got := reqs[4].LastContent(); !strings.Contains(got, "Verification failed") {
		t.Errorf("verification feedback not sent: %q", got)
	}
	if reqs[0].Tools[0].Function.Name != "run_python" {
		t.Errorf("tool not offered: %+v", reqs[0].Tools)
	}
}

func TestLLMUnavailable(t *testing.T) {
	client, _ := newLLM(t, func(testsupport.FakeLLMRequest, int) (int, any) {
		return 500, testsupport.ErrorReply("overloaded")
	})
	a := newAgent(t, client, nil)
	tr, err := a.Execute(context.Background(), task("anything", nil))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.ErrorType != core.ErrNetwork || !strings.Contains(tr.ErrorMessage, "500") {
		t.Errorf("trajectory: %+v", tr)
	}
}

func TestMaxStepsBoundsTheLoop(t *testing.T) {
	client, fake := newLLM(t, func(testsupport.FakeLLMRequest, int) (int, any) {
		return 200, testsupport.ToolCallReply("c", "run_python", map[string]string{"code": "print('again')"})
	})
	a := newAgent(t, client, nil)
	tk := task("loop forever", map[string]any{"expected_output": "never"})
	tk.MaxSteps = 3
	tr, err := a.Execute(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || len(tr.Steps) != 3 || tr.Metadata["stop_reason"] != "max_steps" || tr.ErrorType != core.ErrWrongAnswer {
		t.Errorf("steps=%d meta=%v error=%s; want 3 runs, max_steps, wrong_answer", len(tr.Steps), tr.Metadata, tr.ErrorType)
	}
	if n := len(fake.Requests()); n != 3 {
		t.Errorf("%d LLM calls, want 3", n)
	}
}

func TestLLMCannotExitPastTheTests(t *testing.T) {
	client, _ := newLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
		if n == 0 {
			return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": hackAtexit})
		}
		return 200, testsupport.AnswerReply("done")
	})
	a := newAgent(t, client, nil)
	tr, err := a.Execute(context.Background(), task("Write add(a, b).", map[string]any{"tests": addTests}))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.Metadata["verified"] != false || tr.ErrorType != core.ErrWrongAnswer {
		t.Fatalf("success=%v verified=%v error=%s (%s); want a failed verification", tr.Success, tr.Metadata["verified"], tr.ErrorType, tr.ErrorMessage)
	}
}

// TestExportIsWhatTheModelReceived: the OpenAI record of an LLM trajectory,
// through its file, carries byte for byte the messages and tools the model
// server received, then the model's reply.
func TestExportIsWhatTheModelReceived(t *testing.T) {
	client, fake := newLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
		if n == 0 {
			return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": "import sys\nprint(len(sys.stdin.read()) > 0 and 4)"})
		}
		return 200, testsupport.AnswerReply("4 <done> & dusted")
	})
	a := newAgent(t, client, nil)
	tr, err := a.Execute(context.Background(), task("What is 2 + 2? Print it, <quietly> & \"exactly\".", map[string]any{"expected_output": "4", "stdin": "a < b\n"}))
	if err != nil || !tr.Success {
		t.Fatalf("execute: %v, success=%v (%s)", err, tr.Success, tr.ErrorMessage)
	}
	dir := t.TempDir()
	w, err := trajectory.NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(tr); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if sum, err := export.Write(&buf, dir, export.FormatOpenAI, export.Options{}); err != nil || sum.Written != 1 {
		t.Fatalf("export: %+v, %v", sum, err)
	}
	var rec, sent struct {
		Messages []json.RawMessage `json:"messages"`
		Tools    json.RawMessage   `json:"tools"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if err := json.Unmarshal(reqs[len(reqs)-1].Body, &sent); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Tools, sent.Tools) {
		t.Errorf("exported tools\n%s\nthe server received\n%s", rec.Tools, sent.Tools)
	}
	if len(rec.Messages) != len(sent.Messages)+1 {
		t.Fatalf("%d exported messages; the last request had %d, then the reply", len(rec.Messages), len(sent.Messages))
	}
	for i, m := range sent.Messages {
		if !bytes.Equal(rec.Messages[i], m) {
			t.Errorf("exported message %d\n%s\nthe server received\n%s", i, rec.Messages[i], m)
		}
	}
	var system, final struct{ Role, Content string }
	_ = json.Unmarshal(sent.Messages[0], &system)
	_ = json.Unmarshal(rec.Messages[len(rec.Messages)-1], &final)
	if system.Role != "system" || system.Content != prompt.CodeSystem {
		t.Errorf("system message sent = %+v", system)
	}
	if final.Role != "assistant" || final.Content != "4 <done> & dusted" {
		t.Errorf("last exported message = %+v, want the model's answer", final)
	}
	if len(tr.ModelCalls) != 2 || tr.ModelCalls[1].FinishReason != "stop" || !strings.Contains(string(tr.ModelCalls[1].Reply), "dusted") {
		t.Errorf("model_calls = %+v", tr.ModelCalls)
	}
	var share bytes.Buffer
	if sum, err := export.Write(&share, dir, export.FormatShareGPT, export.Options{}); err != nil || sum.Written != 1 {
		t.Errorf("sharegpt export of the recorded exchange: %+v, %v", sum, err)
	}
}

func TestReasoningAnswers(t *testing.T) {
	for _, tc := range []struct {
		name        string
		constraints map[string]any
		success     bool
		verified    any
	}{
		{"no verifier", nil, true, nil},
		{"expected output matches", map[string]any{"expected_output": "42"}, true, true},
		{"expected output differs", map[string]any{"expected_output": "41"}, false, false},
		// Tests need a program: a text answer never passes them.
		{"tests and no program", map[string]any{"tests": "assert True"}, false, false},
		{"tests, expected output matches, no program", map[string]any{"tests": "assert True", "expected_output": "42"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := newLLM(t, func(testsupport.FakeLLMRequest, int) (int, any) { return 200, testsupport.AnswerReply("42") })
			a := newAgent(t, client, nil)
			tk := task("What is 6 times 7?", tc.constraints)
			tk.TaskType = core.TaskReasoning
			tk.MaxSteps = 1
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success != tc.success || tr.Metadata["verified"] != tc.verified {
				t.Errorf("success=%v verified=%v (%s), want %v %v", tr.Success, tr.Metadata["verified"], tr.ErrorMessage, tc.success, tc.verified)
			}
		})
	}
}

// TestHiddenTests: the model is shown visible_tests, never tests, and both
// are checked.
func TestHiddenTests(t *testing.T) {
	const visible, hidden = "assert add(1, 1) == 2", "assert add(2, 3) == 5  # hidden-check"
	client, fake := newLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
		if n == 0 {
			// Passes the visible test only.
			return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": "def add(a, b):\n    return 2\n"})
		}
		return 200, testsupport.AnswerReply("done")
	})
	a := newAgent(t, client, nil)
	tk := task("Write add(a, b).", map[string]any{"tests": hidden, "visible_tests": visible})
	tk.MaxSteps = 2
	tr, err := a.Execute(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Success || tr.Metadata["verified"] != false {
		t.Errorf("a program failing the hidden tests: success=%v verified=%v", tr.Success, tr.Metadata["verified"])
	}
	for i, req := range fake.Requests() {
		body := string(req.Body)
		if strings.Contains(body, "hidden-check") {
			t.Errorf("request %d shows the model the hidden tests", i)
		}
		if !strings.Contains(body, "add(1, 1) == 2") {
			t.Errorf("request %d does not show the visible tests", i)
		}
	}
}

func TestRewardAndExitReason(t *testing.T) {
	a := newAgent(t, nil, nil)
	half := 0.5
	one, zero := 1.0, 0.0
	for _, tc := range []struct {
		name        string
		constraints map[string]any
		reward      *float64
		exit        core.ExitReason
	}{
		{"no verifier", map[string]any{"code": "print(1)"}, nil, core.ExitReplayed},
		{"output matches", map[string]any{"code": "print(1)", "expected_output": "1"}, &one, core.ExitReplayed},
		{"output and tests pass", map[string]any{"code": "x = 1\nprint(x)", "expected_output": "1", "tests": "assert x == 1"}, &one, core.ExitReplayed},
		{"tests pass, output wrong", map[string]any{"code": "x = 1\nprint(2)", "expected_output": "1", "tests": "assert x == 1"}, &half, core.ExitReplayed},
		{"output right, tests fail", map[string]any{"code": "x = 1\nprint(1)", "expected_output": "1", "tests": "assert x == 2"}, &half, core.ExitReplayed},
		{"both fail", map[string]any{"code": "x = 1\nprint(2)", "expected_output": "1", "tests": "assert x == 2"}, &zero, core.ExitReplayed},
		{"the program fails first", map[string]any{"code": "raise SystemExit(3)", "tests": "assert True"}, &zero, core.ExitReplayed},
		{"timeout", map[string]any{"code": "while True: pass", "expected_output": "1"}, &zero, core.ExitTimeout},
		{"a sys.exit(0) hack", map[string]any{"code": hackSysExit, "tests": addTests}, &zero, core.ExitReplayed},
		{"invalid constraints", map[string]any{"code": "print(1)", "expected": "1"}, nil, core.ExitInvalidTask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := task("reward", tc.constraints)
			if tc.exit == core.ExitTimeout {
				tk.Timeout = 2
			}
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if (tr.Reward == nil) != (tc.reward == nil) || tr.Reward != nil && *tr.Reward != *tc.reward {
				t.Errorf("reward = %v, want %v", fmtReward(tr.Reward), fmtReward(tc.reward))
			}
			if tr.ExitReason != tc.exit {
				t.Errorf("exit_reason = %q, want %q (%s)", tr.ExitReason, tc.exit, tr.ErrorMessage)
			}
			if tr.Success && (tr.Reward != nil && *tr.Reward != 1) {
				t.Errorf("a success with reward %v", *tr.Reward)
			}
		})
	}
}

func fmtReward(r *float64) any {
	if r == nil {
		return "absent"
	}
	return *r
}
