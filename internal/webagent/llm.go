package webagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentdataplatform/adp/internal/agent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
)

// withLLM lets the model choose the actions.
func (r *run) withLLM(ctx context.Context) {
	var startPage string
	if len(r.tr.Steps) > 0 {
		startPage = r.tr.Steps[0].Observation
	}
	user := llm.UserMessage(prompt.WebUser(r.description(), startPage, len(r.tr.Steps) > 0))
	r.vision = r.a.Vision && r.a.ScreenshotDir != ""
	if r.vision && len(r.tr.Steps) > 0 && r.tr.Steps[0].ErrorType != core.ErrBrowser {
		first := &r.tr.Steps[0]
		if name, ok := first.ActionParams["screenshot"].(string); ok {
			// The screenshot constraint took it already.
			if png, err := os.ReadFile(filepath.Join(r.a.ScreenshotDir, name)); err == nil {
				r.image, r.imageNote = png, fmt.Sprintf("Screenshot of the viewport after step 1 (%s).", name)
			}
		} else {
			r.screenshot(ctx, first, 1)
		}
		if png, note, ok := (&llmTools{r: r}).TakeImage(); ok {
			user = llm.UserParts(llm.TextPart(user.Content), llm.TextPart(note), llm.ImagePart("image/png", png))
		}
	}
	loop := agent.NewLoop(r.a.LLM, r.task)
	out, err := loop.Run(ctx, []llm.Message{llm.SystemMessage(prompt.WebSystem), user}, &llmTools{r: r})
	r.vision = false
	out.Record(ctx, r.tr, err, r.start)
}

type llmTools struct{ r *run }

var _ agent.ImageTools = (*llmTools)(nil)

// TakeImage is the screenshot of the last step, with vision.
func (t *llmTools) TakeImage() (png []byte, note string, ok bool) {
	png, note = t.r.image, t.r.imageNote
	t.r.image, t.r.imageNote = nil, ""
	return png, note, png != nil
}

func (t *llmTools) Definitions() []llm.Tool { return prompt.WebTools }

func (t *llmTools) Call(ctx context.Context, call llm.ToolCall) (string, bool) {
	a, err := actionFromCall(call)
	if err != nil {
		return "error: " + err.Error(), false
	}
	step := t.r.do(ctx, a, false)
	obs := step.Observation
	if step.ErrorType != core.ErrNone {
		obs = fmt.Sprintf("error: %s: %s\n\n%s", step.ErrorType, step.ErrorMessage, obs)
	}
	// A dead browser or a finish ends the loop.
	return obs, a.Action == "finish" || t.r.fatal != nil
}

func (t *llmTools) Answer(ctx context.Context, answer string) string {
	ans := strings.TrimSpace(answer)
	t.r.answer = &ans
	if t.r.c.HasVerifier() {
		// The model is told that a check failed and which kind, never
		// what the check expects.
		if ok, _, feedback, _, _ := t.r.verify(ctx); !ok {
			return "Verification failed: " + feedback + ". Continue, then call finish with the answer."
		}
	}
	return ""
}
