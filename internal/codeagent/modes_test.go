package codeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// newModeLLM is newLLM with the client's configuration adjusted by mod.
func newModeLLM(t *testing.T, mod func(*llm.Config), reply func(testsupport.FakeLLMRequest, int) (int, any)) (*llm.Client, *testsupport.FakeLLM) {
	t.Helper()
	f := testsupport.StartFakeLLM(t, reply)
	cfg := llm.Config{BaseURL: f.URL, Model: "fake", MaxRetries: 1, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
	mod(&cfg)
	c, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

const addProgram = "def add(a, b):\n    return a + b\n"

// TestToolModesAndAPIs: native chat, text chat and text completions each
// produce a verified trajectory through the real jail, and the trajectory
// records exactly what the server received: the messages of the last
// request byte for byte (chat) or each call's prompt (completions), the
// model's text as the assistant message, and the llm block.
func TestToolModesAndAPIs(t *testing.T) {
	logprobs := map[string]any{"content": []any{map[string]any{"token": "done", "logprob": -0.25}}}
	tests := []struct {
		name, mode, api string
		// program is the model's first reply, which runs addProgram.
		program func() map[string]any
		answer  func() map[string]any
		path    string
	}{
		{"native chat", llm.ToolModeNative, llm.APIChat,
			func() map[string]any {
				return testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": addProgram})
			},
			func() map[string]any { return testsupport.AnswerReply("done") }, "/v1/chat/completions"},
		{"text chat", llm.ToolModeText, llm.APIChat,
			func() map[string]any {
				return testsupport.AnswerReply("I will define it.\n```python\n" + addProgram + "```\n")
			},
			func() map[string]any { return testsupport.AnswerReply("done") }, "/v1/chat/completions"},
		{"text completions", llm.ToolModeText, llm.APICompletions,
			func() map[string]any { return testsupport.CompletionReply(" ```python\n" + addProgram + "```") },
			func() map[string]any { return testsupport.CompletionReply(" done") }, "/v1/completions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, fake := newModeLLM(t, func(c *llm.Config) { c.ToolMode, c.API, c.Logprobs = tt.mode, tt.api, true },
				func(req testsupport.FakeLLMRequest, n int) (int, any) {
					if n == 0 {
						return 200, tt.program()
					}
					// The answer carries logprobs and token ids, as vLLM sends them when asked.
					if !req.ReturnTokenIDs {
						return 400, testsupport.ErrorReply("return_token_ids not asked for")
					}
					return 200, testsupport.WithTokens(tt.answer(), logprobs, []int{1, 2, 3}, []int{42})
				})
			a := newAgent(t, client, nil)
			tr, err := a.Execute(context.Background(), task("Write add(a, b).", map[string]any{"tests": "assert add(2, 3) == 5"}))
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Success || tr.Metadata[core.MetaVerified] != true || tr.Reward == nil || *tr.Reward != 1 || tr.ExitReason != core.ExitAnswered {
				t.Fatalf("success=%v verified=%v reward=%v exit=%s (%s)", tr.Success, tr.Metadata[core.MetaVerified], tr.Reward, tr.ExitReason, tr.ErrorMessage)
			}
			if len(tr.Steps) != 2 || tr.Steps[0].ActionParams["code"] != addProgram || tr.Steps[1].ActionParams["purpose"] != purposeVerify {
				t.Errorf("steps %+v, want the run of the program, then its verification", tr.Steps)
			}
			reqs := fake.Requests()
			if len(reqs) != 2 || len(tr.ModelCalls) != 2 {
				t.Fatalf("%d requests, %d model calls recorded", len(reqs), len(tr.ModelCalls))
			}
			for i, r := range reqs {
				if r.Path != tt.path {
					t.Errorf("request %d went to %s", i, r.Path)
				}
				if tt.mode == llm.ToolModeText && r.HasField("tools") {
					t.Errorf("request %d of text mode has a tools field", i)
				}
			}
			want := core.LLMRecord{Endpoint: fake.URL + tt.path[len("/v1"):], Model: "fake", Temperature: new(0.0), ToolMode: tt.mode, API: tt.api}
			if got, want := mustJSON(t, tr.LLM), mustJSON(t, want); got != want {
				t.Errorf("llm record %s, want %s", got, want)
			}
			last := reqs[len(reqs)-1]
			if tt.api == llm.APIChat {
				sent, tools := last.RawMessages()
				if len(tr.Messages) != len(sent)+1 {
					t.Fatalf("%d recorded messages; the last request had %d, then the reply", len(tr.Messages), len(sent))
				}
				for i, m := range sent {
					if !bytes.Equal(tr.Messages[i], m) {
						t.Errorf("recorded message %d\n%s\nthe server received\n%s", i, tr.Messages[i], m)
					}
				}
				if !bytes.Equal(tr.Tools, tools) {
					t.Errorf("recorded tools %s, the server received %s", tr.Tools, tools)
				}
			} else {
				for i, r := range reqs {
					if tr.ModelCalls[i].Prompt != r.Prompt || r.Prompt == "" {
						t.Errorf("call %d: recorded prompt\n%q\nthe server received\n%q", i, tr.ModelCalls[i].Prompt, r.Prompt)
					}
				}
				// The recorded messages are what the last prompt was rendered from.
				var msgs []llm.Message
				for _, raw := range tr.Messages[:len(tr.Messages)-1] {
					var m llm.Message
					if err := json.Unmarshal(raw, &m); err != nil {
						t.Fatal(err)
					}
					msgs = append(msgs, m)
				}
				if got := llm.RenderPrompt(msgs); got != last.Prompt {
					t.Errorf("the recorded messages render to\n%q\nthe server received\n%q", got, last.Prompt)
				}
				if tr.Tools != nil {
					t.Errorf("tools recorded for a completions request: %s", tr.Tools)
				}
			}
			// In text mode the model's first reply is recorded as the text it produced.
			if tt.mode == llm.ToolModeText {
				var reply struct {
					Role, Content string
					ToolCalls     []any `json:"tool_calls"`
				}
				if err := json.Unmarshal(tr.Messages[2], &reply); err != nil {
					t.Fatal(err)
				}
				text := tt.program()
				wantText := fmt.Sprint(firstChoice(text)["text"])
				if msg, ok := firstChoice(text)["message"].(map[string]any); ok {
					wantText = fmt.Sprint(msg["content"])
				}
				if reply.Role != "assistant" || reply.Content != wantText || reply.ToolCalls != nil {
					t.Errorf("recorded reply %+v, want the model's text %q", reply, wantText)
				}
			}
			var final struct{ Content string }
			_ = json.Unmarshal(tr.Messages[len(tr.Messages)-1], &final)
			if want := map[string]string{llm.APIChat: "done", llm.APICompletions: " done"}[tt.api]; final.Content != want {
				t.Errorf("last recorded message %s, want the answer %q", tr.Messages[len(tr.Messages)-1], want)
			}
			call := tr.ModelCalls[1]
			if call.FinishReason != "stop" || call.Usage.TotalTokens != 15 || mustJSON(t, call.PromptTokenIDs) != "[1,2,3]" ||
				mustJSON(t, call.CompletionTokenIDs) != "[42]" || string(call.Logprobs) != `{"content":[{"logprob":-0.25,"token":"done"}]}` {
				t.Errorf("model call %+v (logprobs %s)", call, call.Logprobs)
			}
			if tr.ModelCalls[0].Logprobs != nil || tr.ModelCalls[0].CompletionTokenIDs != nil {
				t.Errorf("the first call recorded logprobs or token ids the server did not send: %+v", tr.ModelCalls[0])
			}
		})
	}
}

// TestSeedPerAttempt: attempt k of a task with sampling.seed s sends seed
// s+k, the answer depends on it, and each trajectory records its seed.
func TestSeedPerAttempt(t *testing.T) {
	const seed = 100
	client, fake := newModeLLM(t, func(*llm.Config) {}, func(req testsupport.FakeLLMRequest, _ int) (int, any) {
		if req.Seed == nil {
			return 400, testsupport.ErrorReply("no seed")
		}
		if len(req.Messages) > 2 { // the program ran: answer
			return 200, testsupport.AnswerReply("done")
		}
		code := addProgram
		if *req.Seed%2 == 1 { // odd seeds write a wrong program
			code = "def add(a, b):\n    return a - b\n"
		}
		return 200, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": code})
	})
	a := newAgent(t, client, nil)
	for k := range 4 {
		tk := task("Write add(a, b).", map[string]any{"tests": "assert add(2, 3) == 5"})
		tk.MaxSteps, tk.Samples, tk.SampleIndex, tk.Sampling = 1, 4, k, &core.Sampling{Seed: new(int64(seed))}
		before := len(fake.Requests())
		tr, err := a.Execute(context.Background(), tk)
		if err != nil {
			t.Fatal(err)
		}
		reqs := fake.Requests()[before:]
		if len(reqs) == 0 {
			t.Fatalf("attempt %d sent no request", k)
		}
		for _, r := range reqs {
			if *r.Seed != seed+int64(k) || r.Temperature == nil || *r.Temperature != llm.DefaultSampledTemperature {
				t.Errorf("attempt %d sent seed %d temperature %v, want %d and %v", k, *r.Seed, r.Temperature, seed+k, llm.DefaultSampledTemperature)
			}
		}
		if tr.LLM == nil || tr.LLM.Seed == nil || *tr.LLM.Seed != seed+int64(k) || *tr.LLM.Temperature != llm.DefaultSampledTemperature {
			t.Errorf("attempt %d records llm %s", k, mustJSON(t, tr.LLM))
		}
		if wantOK := k%2 == 0; tr.Success != wantOK {
			t.Errorf("attempt %d (seed %d): success %v, want %v", k, seed+k, tr.Success, wantOK)
		}
	}
}

func firstChoice(reply map[string]any) map[string]any {
	return reply["choices"].([]any)[0].(map[string]any)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSamplingReachesEveryCall: a program task and a workspace task driven
// by a model send, on every call, the task's sampling over the LLM_*
// defaults (seed + sample_index), and record what they sent.
func TestSamplingReachesEveryCall(t *testing.T) {
	defaults := func(c *llm.Config) {
		c.Temperature, c.TopP, c.MaxTokens, c.Seed = new(0.3), new(0.9), 256, new(int64(40))
	}
	tests := []struct {
		name    string
		task    func() core.TaskSpec
		replies []map[string]any
	}{
		{"program", func() core.TaskSpec {
			return task("Write add(a, b).", map[string]any{"tests": "assert add(2, 3) == 5"})
		}, []map[string]any{
			testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": addProgram}),
			testsupport.AnswerReply("done"),
		}},
		{"workspace", func() core.TaskSpec {
			return wsTask(map[string]any{"files": calcRepo, "test_command": calcTest})
		}, []map[string]any{
			testsupport.ToolCallReply("c0", "edit_file", map[string]any{"path": "calc.py", "old": "a - b", "new": "a + b"}),
			testsupport.ToolCallReply("c1", "finish", map[string]any{"answer": "fixed"}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, fake := newModeLLM(t, defaults, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
				return 200, tt.replies[min(n, len(tt.replies)-1)]
			})
			a := newWorkspaceAgent(t, client, t.TempDir())
			tk := tt.task()
			// The task overrides max_tokens and the seed; the rest are the defaults.
			tk.Samples, tk.SampleIndex, tk.Sampling = 3, 2, &core.Sampling{MaxTokens: new(64), Seed: new(int64(7))}
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Success {
				t.Fatalf("attempt failed: %s %s", tr.ErrorType, tr.ErrorMessage)
			}
			const want = `{"temperature":0.3,"top_p":0.9,"max_tokens":64,"seed":9}`
			reqs := fake.Requests()
			if len(reqs) != len(tt.replies) {
				t.Errorf("%d model calls, want %d", len(reqs), len(tt.replies))
			}
			for i, r := range reqs {
				if got := mustJSON(t, llm.Params{Temperature: r.Temperature, TopP: r.TopP, MaxTokens: r.MaxTokens, Seed: r.Seed}); got != want {
					t.Errorf("call %d sent %s, want %s", i, got, want)
				}
			}
			if tr.LLM == nil {
				t.Fatal("no llm record")
			}
			if got := mustJSON(t, llm.Params{Temperature: tr.LLM.Temperature, TopP: tr.LLM.TopP, MaxTokens: tr.LLM.MaxTokens, Seed: tr.LLM.Seed}); got != want {
				t.Errorf("recorded %s, want %s", got, want)
			}
		})
	}
}

// TestContextOverflowEndsTheAttempt: when the server refuses the next
// request as longer than the model's context (llama.cpp's 400), a program
// attempt and a workspace attempt end with context_exceeded (error type
// and exit reason), no reward, and the refused request's messages as the
// record.
func TestContextOverflowEndsTheAttempt(t *testing.T) {
	tests := []struct {
		name  string
		task  func() core.TaskSpec
		first map[string]any
	}{
		{"program", func() core.TaskSpec {
			return task("Write add(a, b).", map[string]any{"tests": "assert add(2, 3) == 5"})
		}, testsupport.ToolCallReply("c0", "run_python", map[string]string{"code": addProgram})},
		{"workspace", func() core.TaskSpec {
			return wsTask(map[string]any{"files": calcRepo, "test_command": calcTest})
		}, testsupport.ToolCallReply("c0", "edit_file", map[string]any{"path": "calc.py", "old": "a - b", "new": "a + b"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, fake := newModeLLM(t, func(*llm.Config) {}, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
				if n == 0 {
					return 200, tt.first
				}
				return 400, []byte(testsupport.LlamaContextExceeded)
			})
			a := newWorkspaceAgent(t, client, t.TempDir())
			tr, err := a.Execute(context.Background(), tt.task())
			if err != nil {
				t.Fatal(err)
			}
			if tr.Success || tr.ErrorType != core.ErrContextExceeded || tr.ExitReason != core.ExitContextExceeded ||
				tr.Reward == nil || *tr.Reward != 0 || !strings.Contains(tr.ErrorMessage, "exceed_context_size_error") {
				t.Fatalf("success %v error %s (%s) exit %s reward %v", tr.Success, tr.ErrorType, tr.ErrorMessage, tr.ExitReason, tr.Reward)
			}
			reqs := fake.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2 (a refusal is not retried)", len(reqs))
			}
			sent, _ := reqs[1].RawMessages()
			if len(tr.Messages) != len(sent) || !bytes.Equal(tr.Messages[len(sent)-1], sent[len(sent)-1]) {
				t.Errorf("recorded %d messages, ending %s; the refused request had %d", len(tr.Messages), tr.Messages[len(tr.Messages)-1], len(sent))
			}
		})
	}
}
