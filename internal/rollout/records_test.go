package rollout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"github.com/agentdataplatform/adp/internal/trajectory"
)

// newFakeClient is a client of a fake LLM server that answers with
// replies[n] (a []byte body is sent as is) and then with an answer.
func newFakeClient(t *testing.T, mod func(*llm.Config), replies ...func() (int, any)) (*llm.Client, *testsupport.FakeLLM) {
	t.Helper()
	fake := testsupport.StartFakeLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
		if n < len(replies) {
			return replies[n]()
		}
		return 200, testsupport.AnswerReply("out of script")
	})
	cfg := llm.Config{BaseURL: fake.URL, Model: "asked-for", MaxRetries: -1, RequestTimeout: 10 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, fake
}

func raw(status int, body string) func() (int, any) {
	return func() (int, any) { return status, []byte(body) }
}

func reply(body map[string]any) func() (int, any) {
	return func() (int, any) { return 200, body }
}

// runAttempt runs one attempt with client against a testEnv and returns
// its trajectory; the error is the model's failure, if any.
func runAttempt(t *testing.T, client *llm.Client, task core.TaskSpec) (*core.Trajectory, error) {
	t.Helper()
	tr := runModel(t, client, &testEnv{succeed: true}, task)
	for _, s := range tr.Steps {
		if s.ActionParams["tool"] == "llm" {
			return tr, fmt.Errorf("%s", s.ErrorMessage)
		}
	}
	return tr, nil
}

// TestRepliesStoredByteForByte: the trajectory file holds each reply and
// its logprobs exactly as the server sent them (no re-indentation, no HTML
// escaping of '<', '&', '>' or U+2028), with the served model, id and
// fingerprint; reading the file back gives the same bytes.
func TestRepliesStoredByteForByte(t *testing.T) {
	t.Parallel()
	callMsg := `{ "role" : "assistant",
   "content" : "a < b && c > d` + "\u2028" + `\u00e9",
   "tool_calls" : [ { "id":"c1", "type":"function", "function": {"name":"echo","arguments":"{\"text\": \"<&>\"}"} } ] }`
	callLogprobs := `{"content": [ {"token":"<","logprob":-0.5,"top_logprobs":[]},
  {"token":"&","logprob":-1.25,"top_logprobs":[]} ]}`
	answerMsg := `{"role":"assistant",  "content":"done </script> &amp;"}`
	body := func(msg, logprobs, finish string) string {
		return `{"id":"chatcmpl-7","object":"chat.completion","model":"served.gguf","system_fingerprint":"b6100",
 "choices":[{"index":0,"message":` + msg + `,"logprobs":` + logprobs + `,"finish_reason":"` + finish + `"}],
 "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`
	}
	client, _ := newFakeClient(t, func(c *llm.Config) { c.Logprobs = true },
		raw(200, body(callMsg, callLogprobs, "tool_calls")), raw(200, body(answerMsg, "null", "stop")))
	tr, err := runAttempt(t, client, core.TaskSpec{TaskID: "bytes", TaskType: core.TaskCode, MaxSteps: 3})
	if err != nil {
		t.Fatal(err)
	}
	w, err := trajectory.NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(tr); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(w.Path("bytes", 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{callMsg, callLogprobs, answerMsg} {
		if !bytes.Contains(file, []byte(want)) {
			t.Errorf("the file does not hold the server's bytes\n%s\nfile:\n%s", want, file)
		}
	}
	back, err := trajectory.Read(w.Path("bytes", 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(back.ModelCalls) != 2 {
		t.Fatalf("%d model calls recorded", len(back.ModelCalls))
	}
	c0, c1 := back.ModelCalls[0], back.ModelCalls[1]
	if string(c0.Reply) != callMsg || string(c0.Logprobs) != callLogprobs || string(c1.Reply) != answerMsg || c1.Logprobs != nil {
		t.Errorf("read back replies %s %s, logprobs %s %s", c0.Reply, c1.Reply, c0.Logprobs, c1.Logprobs)
	}
	if c0.ID != "chatcmpl-7" || c0.Model != "served.gguf" || c0.SystemFingerprint != "b6100" || back.LLM.Model != "asked-for" {
		t.Errorf("call identity %q %q %q, asked for %q", c0.ID, c0.Model, c0.SystemFingerprint, back.LLM.Model)
	}
}

// TestTokenCoverage: with logprobs asked for, each call says how far its
// logprobs and token ids cover the tokens its usage counts.
func TestTokenCoverage(t *testing.T) {
	t.Parallel()
	lp := func(n int) map[string]any {
		var c []any
		for i := range n {
			c = append(c, map[string]any{"token": fmt.Sprint(i), "logprob": -0.1})
		}
		return map[string]any{"content": c}
	}
	tests := []struct {
		name     string
		logprobs bool
		body     map[string]any
		want     string // the recorded tokens record, "" for none
	}{
		{"vLLM: all of them", true, testsupport.WithTokens(testsupport.AnswerReply("ok"), lp(5), []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []int{1, 2, 3, 4, 5}),
			`{"logprobs":{"status":"complete","count":5},"prompt_token_ids":{"status":"complete","count":10},"completion_token_ids":{"status":"complete","count":5}}`},
		{"llama.cpp: fewer logprobs, no token ids", true, testsupport.WithTokens(testsupport.AnswerReply("ok"), lp(4), nil, nil),
			`{"logprobs":{"status":"incomplete","count":4},"prompt_token_ids":{"status":"missing","count":0},"completion_token_ids":{"status":"missing","count":0}}`},
		{"no logprobs came", true, testsupport.AnswerReply("ok"),
			`{"logprobs":{"status":"missing","count":0},"prompt_token_ids":{"status":"missing","count":0},"completion_token_ids":{"status":"missing","count":0}}`},
		{"not asked", false, testsupport.WithTokens(testsupport.AnswerReply("ok"), lp(5), nil, nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, _ := newFakeClient(t, func(c *llm.Config) { c.Logprobs = tt.logprobs }, reply(tt.body))
			tr, err := runAttempt(t, client, core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, MaxSteps: 2})
			if err != nil {
				t.Fatal(err)
			}
			var got string
			if tok := tr.ModelCalls[0].Tokens; tok != nil {
				got = string(must(json.Marshal(tok)))
			}
			if got != tt.want {
				t.Errorf("tokens %s\nwant   %s", got, tt.want)
			}
		})
	}
	// Without a token count in the usage nothing can be checked.
	if c := core.CoverageOf(3, true, 0); c.Status != core.CoverageUnchecked {
		t.Errorf("no usage: %+v", c)
	}
}

// TestModelCallFailures: a call the server refuses or cannot answer ends
// the attempt with its own error type and exit reason (a context overflow
// is neither a network error nor an llm_error), the error says so once,
// and the recorded messages are the request that got no answer, as sent.
func TestModelCallFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		failure   func() (int, any)
		wantType  core.ErrorType
		wantExit  core.ExitReason
		wantInErr string
	}{
		{"llama.cpp context overflow", raw(400, testsupport.LlamaContextExceeded), core.ErrContextExceeded, core.ExitContextExceeded, "exceed_context_size_error"},
		{"OpenAI context overflow", raw(400, testsupport.OpenAIContextExceeded), core.ErrContextExceeded, core.ExitContextExceeded, "context_length_exceeded"},
		{"vLLM context overflow", raw(400, testsupport.VLLMContextExceeded), core.ErrContextExceeded, core.ExitContextExceeded, "maximum context length"},
		{"wrong key", raw(401, `{"error":{"message":"invalid api key"}}`), core.ErrLLMRefused, core.ExitLLMError, "401 Unauthorized"},
		{"server down", raw(503, `{"error":{"message":"loading model"}}`), core.ErrNetwork, core.ExitLLMError, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, fake := newFakeClient(t, nil,
				reply(testsupport.ToolCallReply("c1", "echo", map[string]string{"text": "hi"})), tt.failure)
			tr, err := runAttempt(t, client, core.TaskSpec{TaskID: "t", TaskType: core.TaskCode, MaxSteps: 3})
			if err == nil {
				t.Fatal("no error")
			}
			if tr.ExitReason != tt.wantExit || len(tr.Steps) != 2 || tr.Steps[1].ErrorType != tt.wantType || tr.ErrorType != tt.wantType {
				t.Fatalf("exit %s, error %s, steps %+v; want %s with the echo step and one %s step", tr.ExitReason, tr.ErrorType, tr.Steps, tt.wantExit, tt.wantType)
			}
			msg := tr.Steps[1].ErrorMessage
			if !strings.HasPrefix(msg, "model call 2: llm: ") || strings.Count(msg, "llm: ") != 1 || !strings.Contains(msg, tt.wantInErr) {
				t.Errorf("error message %q, want model call 2, one llm: prefix and %q", msg, tt.wantInErr)
			}
			reqs := fake.Requests()
			sent, tools := reqs[len(reqs)-1].RawMessages()
			if len(tr.Messages) != len(sent) || !bytes.Equal(tr.Tools, tools) {
				t.Fatalf("recorded %d messages, the refused request had %d", len(tr.Messages), len(sent))
			}
			for i := range sent {
				if !bytes.Equal(tr.Messages[i], sent[i]) {
					t.Errorf("message %d recorded %s, sent %s", i, tr.Messages[i], sent[i])
				}
			}
			if len(tr.ModelCalls) != 1 {
				t.Errorf("%d model calls recorded, want the one answered", len(tr.ModelCalls))
			}
		})
	}
}
