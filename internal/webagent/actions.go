package webagent

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/agentdataplatform/adp/internal/browser"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
)

// Action is one browser action; the one definition is core's.
type Action = core.WebAction

// perform runs a on the session; extract returns the text it found.
func perform(ctx context.Context, s *browser.Session, a Action) (extracted string, err error) {
	switch a.Action {
	case "goto":
		return "", s.Goto(ctx, a.URL)
	case "click":
		return "", s.Click(ctx, a.Selector)
	case "fill":
		return "", s.Fill(ctx, a.Selector, a.Text)
	case "fill_and_submit":
		return "", s.FillAndSubmit(ctx, a.Selector, a.Text)
	case "press":
		return "", s.Press(ctx, a.Selector, a.Key)
	case "select":
		return "", s.Select(ctx, a.Selector, a.Value)
	case "scroll":
		return "", s.Scroll(ctx)
	case "wait":
		return "", s.Wait(ctx, a.Selector)
	case "extract":
		return s.Extract(ctx, a.Selector)
	case "finish":
		return "", nil
	}
	return "", fmt.Errorf("unknown action %q", a.Action)
}

// The LLM tools: one per action.
var tools = []llm.Tool{
	llm.NewTool("goto", "Navigate to a URL (http or https).", `{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]}`),
	llm.NewTool("click", "Click the first element matching a CSS or Playwright selector.", `{"type":"object","properties":{"selector":{"type":"string"}},"required":["selector"]}`),
	llm.NewTool("fill", "Type text into an input matching a selector (replacing its value).", `{"type":"object","properties":{"selector":{"type":"string"},"text":{"type":"string"}},"required":["selector","text"]}`),
	llm.NewTool("press", "Press a key (e.g. Enter) in the element matching a selector.", `{"type":"object","properties":{"selector":{"type":"string"},"key":{"type":"string"}},"required":["selector","key"]}`),
	llm.NewTool("select", "Choose an option by value in a <select> matching a selector.", `{"type":"object","properties":{"selector":{"type":"string"},"value":{"type":"string"}},"required":["selector","value"]}`),
	llm.NewTool("scroll", "Scroll the page down by one screen.", `{"type":"object","properties":{}}`),
	llm.NewTool("wait", "Wait until an element matching a selector appears.", `{"type":"object","properties":{"selector":{"type":"string"}},"required":["selector"]}`),
	llm.NewTool("extract", "Return the text of the elements matching a selector.", `{"type":"object","properties":{"selector":{"type":"string"}},"required":["selector"]}`),
	llm.NewTool("finish", "Finish the task with the answer.", `{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}`),
}

// actionFromCall decodes a tool call into an Action.
func actionFromCall(call llm.ToolCall) (Action, error) {
	var a Action
	if err := llm.ParseArguments(call, &a); err != nil {
		return Action{}, err
	}
	a.Action = call.Function.Name
	return a, a.Validate()
}

// decodeActions reads a cached sequence.
func decodeActions(raw json.RawMessage) ([]Action, error) {
	as, err := core.DecodeWebActions(raw)
	if err != nil {
		return nil, fmt.Errorf("actions: %w", err)
	}
	return as, nil
}
