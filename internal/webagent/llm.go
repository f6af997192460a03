package webagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	e := r.e
	user := llm.UserMessage(prompt.WebUser(e.description(), startPage, len(r.tr.Steps) > 0))
	e.vision = r.a.Vision && r.a.ScreenshotDir != ""
	if e.vision && len(r.tr.Steps) > 0 && r.tr.Steps[0].ErrorType != core.ErrBrowser {
		first := &r.tr.Steps[0]
		if name, ok := first.ActionParams["screenshot"].(string); ok {
			// The screenshot constraint took it already.
			if png, err := os.ReadFile(filepath.Join(r.a.ScreenshotDir, name)); err == nil {
				e.image, e.imageNote = png, fmt.Sprintf("Screenshot of the viewport after step 1 (%s).", name)
			}
		} else {
			e.screenshot(ctx, first, 1)
		}
		if png, note, ok := e.takeImage(); ok {
			user = llm.UserParts(llm.TextPart(user.Content), llm.TextPart(note), llm.ImagePart("image/png", png))
		}
	}
	loop := agent.NewLoop(r.a.LLM, r.task)
	out, err := loop.Run(ctx, []llm.Message{llm.SystemMessage(prompt.WebSystem), user}, &llmTools{r: r})
	e.vision = false
	out.Record(ctx, r.tr, err, r.start)
}

type llmTools struct{ r *run }

var _ agent.ImageTools = (*llmTools)(nil)

// TakeImage is the screenshot of the last step, with vision.
func (t *llmTools) TakeImage() (png []byte, note string, ok bool) { return t.r.e.takeImage() }

func (t *llmTools) Definitions() []llm.Tool { return prompt.WebTools }

func (t *llmTools) Call(ctx context.Context, call llm.ToolCall) (string, bool) {
	a, err := actionFromCall(call)
	if err != nil {
		return "error: " + err.Error(), false
	}
	step := t.r.do(ctx, a)
	obs := step.Observation
	if step.ErrorType != core.ErrNone {
		obs = fmt.Sprintf("error: %s: %s\n\n%s", step.ErrorType, step.ErrorMessage, obs)
	}
	// A dead browser or a finish ends the loop.
	return obs, a.Action == "finish" || t.r.e.ended()
}

func (t *llmTools) Answer(ctx context.Context, answer string) string {
	// The model is told that a check failed and which kind, never what
	// the check expects.
	if fb := t.r.e.feedback(ctx, answer); fb != "" {
		return "Verification failed: " + fb + ". Continue, then call finish with the answer."
	}
	return ""
}
