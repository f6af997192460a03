package codeagent

import (
	"context"
	"fmt"

	"github.com/agentdataplatform/adp/internal/agent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/prompt"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// withLLM runs the model loop; every run_python call is a step.
func (r *run) withLLM(ctx context.Context) {
	user := prompt.CodeUser(prompt.CodeTask{Description: r.task.Description, Stdin: r.c.Stdin, Checked: r.c.HasVerifier(), VisibleTests: r.c.VisibleTests})
	loop := agent.NewLoop(r.a.LLM, r.task)
	out, err := loop.Run(ctx, []llm.Message{llm.SystemMessage(prompt.CodeSystem), llm.UserMessage(user)}, &llmTools{r: r})
	out.Record(ctx, r.tr, err, r.start)
	if out.Answer != "" {
		r.tr.Metadata[core.MetaAnswer] = out.Answer
	}
	if err != nil {
		r.lastResult = nil // the task did not complete
		return
	}
	switch {
	case r.task.TaskType == core.TaskReasoning && r.lastResult == nil && out.Answer != "":
		// A reasoning task may be answered without code.
		r.answerOnly(out.Answer)
	case r.lastResult != nil && r.c.HasVerifier() && r.verifiedFor != r.lastProgram:
		// The loop ended (max_steps) after a run the model never submitted.
		r.verify(ctx)
	}
}

// answerOnly records a text answer as the result of a reasoning task.
func (r *run) answerOnly(answer string) {
	r.tr.FinalResult = answer
	if r.c.ExpectedOutput != nil {
		ok := normalizeOutput(answer) == normalizeOutput(*r.c.ExpectedOutput)
		var msg string
		if !ok {
			msg = fmt.Sprintf("answer %q does not match the expected output", clip(answer, 200))
		}
		r.settle(ok, msg, false, false, "")
	}
	if r.c.AllTests() != "" {
		// Tests check a program; a text answer cannot pass them.
		outOK := r.verified == nil || *r.verified
		r.settle(outOK, r.verifyMsg, true, false, "the task has tests, which need a program; it was answered in text without one")
	}
	r.lastResult = &sandbox.Result{Stdout: answer}
}

// llmTools adapts a run to the agent loop.
type llmTools struct{ r *run }

var _ agent.Tools = (*llmTools)(nil)

func (t *llmTools) Definitions() []llm.Tool { return []llm.Tool{prompt.RunPython} }

func (t *llmTools) Call(ctx context.Context, call llm.ToolCall) (string, bool) {
	var args struct {
		Code string `json:"code"`
	}
	if err := llm.ParseArguments(call, &args); err != nil || args.Code == "" {
		if err == nil {
			err = fmt.Errorf("argument \"code\" is empty")
		}
		return "error: " + err.Error(), false
	}
	res, step := t.r.execute(ctx, args.Code, purposeRun)
	if res == nil {
		return "error: " + step.ErrorMessage, t.r.jailErr != nil
	}
	if res.OK() {
		t.r.lastProgram, t.r.lastResult = args.Code, res
	}
	return step.Observation, false
}

func (t *llmTools) Answer(ctx context.Context, answer string) string {
	r := t.r
	if r.lastResult == nil {
		if r.task.TaskType == core.TaskReasoning {
			return ""
		}
		return "No program has run successfully yet. Write the program and run it with run_python."
	}
	r.verify(ctx)
	if r.verified != nil && !*r.verified {
		return "Verification failed: " + r.verifyMsg + ". Fix the program and run it again with run_python."
	}
	return ""
}
