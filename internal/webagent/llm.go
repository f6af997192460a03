package webagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/rollout"
)

// description is the task as a policy is told it: the task's description
// and the page's instruction.
func (e *Environment) description() string {
	if e.instruction == "" {
		return e.task.Description
	}
	return e.task.Description + "\n" + e.instruction
}

// firstObservation is what a model is told first: the task and the start
// page (steps are the start's), with vision the start page's screenshot
// (the screenshot constraint's, or one taken now and named in the start
// step).
func (e *Environment) firstObservation(ctx context.Context, steps []core.ExecutionStep) rollout.Observation {
	var startPage string
	if len(steps) > 0 {
		startPage = steps[0].Observation
	}
	obs := rollout.Observation{Text: prompt.WebUser(e.description(), startPage, len(steps) > 0)}
	if !e.vision || len(steps) == 0 {
		return obs
	}
	first := &steps[0]
	if name, ok := first.ActionParams["screenshot"].(string); ok {
		// The screenshot constraint took it already.
		if png, err := os.ReadFile(filepath.Join(e.a.ScreenshotDir, name)); err == nil {
			e.image, e.imageNote = png, fmt.Sprintf("Screenshot of the viewport after step 1 (%s).", name)
		}
	} else {
		e.screenshot(ctx, first, 1)
	}
	obs.Image, obs.ImageNote, _ = e.takeImage()
	return obs
}

// feedback takes answer as the attempt's answer and returns what the
// model may be told of the checks: "" when they pass (or there are none),
// else which kind of check failed, never what it expects.
func (e *Environment) feedback(ctx context.Context, answer string) string {
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
