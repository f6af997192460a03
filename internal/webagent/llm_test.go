package webagent

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// TestModelWithoutABrowser: the web agent's model loop, native and in text
// mode, over the fake site: the trajectory records the llm block and
// exactly the messages the fake server received.
func TestModelWithoutABrowser(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		replies []map[string]any
	}{
		{llm.ToolModeNative, []map[string]any{
			testsupport.ToolCallReply("1", "click", map[string]string{"selector": "a.first"}),
			testsupport.ToolCallReply("2", "finish", map[string]string{"answer": "First"}),
		}},
		{llm.ToolModeText, []map[string]any{
			testsupport.AnswerReply(`{"tool": "click", "arguments": {"selector": "a.first"}}`),
			testsupport.AnswerReply("The result is open.\n```json\n{\"tool\": \"finish\", \"arguments\": {\"answer\": \"First\"}}\n```"),
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			fake := testsupport.StartFakeLLM(t, func(_ testsupport.FakeLLMRequest, n int) (int, any) {
				if n < len(tc.replies) {
					return 200, tc.replies[n]
				}
				return 200, testsupport.AnswerReply("out of script")
			})
			client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake", ToolMode: tc.mode, MaxRetries: 1, BackoffBase: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			site := newFakeSite()
			a := newFakeAgent(t, site, nil)
			a.LLM = client
			tk := webTask("Open the first result", map[string]any{"start_url": "http://site/", "expected_url": "/first", "answer": "First"})
			tk.Samples, tk.SampleIndex, tk.Sampling = 2, 1, &core.Sampling{Seed: new(int64(7)), TopP: new(0.5)}
			tr, err := a.Execute(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Success || tr.ExitReason != core.ExitFinished || tr.FinalResult != "First" {
				t.Fatalf("success=%v exit=%s result=%q (%s), actions %v", tr.Success, tr.ExitReason, tr.FinalResult, tr.ErrorMessage, site.actions)
			}
			want := `{"endpoint":"` + client.URL() + `","model":"fake","temperature":1,"top_p":0.5,"seed":8,"tool_mode":"` + tc.mode + `","api":"chat"}`
			if got, _ := json.Marshal(tr.LLM); string(got) != want {
				t.Errorf("llm record %s, want %s", got, want)
			}
			reqs := fake.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests", len(reqs))
			}
			sent, tools := reqs[1].RawMessages()
			if len(tr.Messages) != len(sent)+1 {
				t.Fatalf("%d recorded messages for %d sent", len(tr.Messages), len(sent))
			}
			for i, m := range sent {
				if !bytes.Equal(tr.Messages[i], m) {
					t.Errorf("recorded message %d\n%s\nthe server received\n%s", i, tr.Messages[i], m)
				}
			}
			if !bytes.Equal(tr.Tools, tools) {
				t.Errorf("recorded tools %s, received %s", tr.Tools, tools)
			}
			if tc.mode == llm.ToolModeText {
				if tools != nil {
					t.Errorf("text mode sent tools %s", tools)
				}
				var sys struct{ Content string }
				_ = json.Unmarshal(sent[0], &sys)
				if !strings.Contains(sys.Content, "- finish: Finish the task with the answer.") {
					t.Errorf("the system prompt does not describe the tools: %q", sys.Content)
				}
			}
		})
	}
}
