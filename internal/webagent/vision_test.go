package webagent

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// TestVisionScreenshots: with Vision, the model's first request carries the
// start page's screenshot and the next one the screenshot after the step,
// each an image part whose bytes are the file its step references, with
// the earlier image taken out; the transcript is the last request byte for
// byte.
func TestVisionScreenshots(t *testing.T) {
	b := setupSite(t, echoSite())
	fake := testsupport.StartFakeLLM(t, func(req testsupport.FakeLLMRequest, n int) (int, any) {
		if n == 0 {
			return 200, testsupport.ToolCallReply("1", "fill", map[string]string{"selector": "input[name=q]", "text": "Lovelace"})
		}
		return 200, testsupport.ToolCallReply("2", "finish", map[string]string{"answer": "done"})
	})
	client, err := llm.New(llm.Config{BaseURL: fake.URL, Model: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	a := *b.agent
	a.LLM, a.Vision = client, true
	tr, err := a.Execute(context.Background(), webTask("Search for Lovelace", map[string]any{"start_url": b.site + "/"}))
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if !tr.Success || len(reqs) != 2 || len(tr.Steps) != 3 {
		t.Fatalf("success=%v %s; %d requests, %d steps", tr.Success, tr.ErrorMessage, len(reqs), len(tr.Steps))
	}
	image := func(url string) []byte {
		data, ok := strings.CutPrefix(url, "data:image/png;base64,")
		if !ok {
			t.Fatalf("image URL %.40q is not a PNG data URL", url)
		}
		png, err := base64.StdEncoding.DecodeString(data)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("image is not a PNG: %v", err)
		}
		return png
	}
	file := func(step int) []byte {
		name, _ := tr.Steps[step].ActionParams["screenshot"].(string)
		got, err := os.ReadFile(filepath.Join(b.dir, name))
		if name == "" || err != nil {
			t.Fatalf("step %d's screenshot %q: %v", step, name, err)
		}
		return got
	}
	// The first request: the start page's screenshot with the task.
	first := reqs[0].Messages[1]
	if len(first.Images) != 1 || !bytes.Equal(image(first.Images[0]), file(0)) || !strings.Contains(first.Content, "Search for Lovelace") {
		t.Fatalf("first request's user message: %d images, %q", len(first.Images), first.Content)
	}
	// The second: the screenshot after the fill, the earlier one gone.
	msgs := reqs[1].Messages
	last := msgs[len(msgs)-1]
	if last.Role != "user" || len(last.Images) != 1 || !bytes.Equal(image(last.Images[0]), file(1)) || !strings.Contains(last.Content, "after step 2") {
		t.Fatalf("second request's last message: %s, %d images, %q", last.Role, len(last.Images), last.Content)
	}
	n := 0
	for _, m := range msgs {
		n += len(m.Images)
	}
	if n != 1 {
		t.Fatalf("the second request carries %d images, want only the latest", n)
	}
	// The record is what the server received, byte for byte, and the reply.
	raw, _ := reqs[1].RawMessages()
	if len(tr.Messages) != len(raw)+1 {
		t.Fatalf("transcript of %d messages, the last request had %d", len(tr.Messages), len(raw))
	}
	for i := range raw {
		if !bytes.Equal(tr.Messages[i], raw[i]) {
			t.Fatalf("message %d recorded as %.200s, sent as %.200s", i, tr.Messages[i], raw[i])
		}
	}
}
