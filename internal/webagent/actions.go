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
func perform(ctx context.Context, s Page, a Action) (extracted string, err error) {
	switch a.Action {
	case "goto":
		return "", s.Goto(ctx, a.URL)
	case "click":
		return "", s.Click(ctx, a.Element())
	case "dblclick":
		return "", s.DoubleClick(ctx, a.Element())
	case "hover":
		return "", s.Hover(ctx, a.Element())
	case "fill":
		return "", s.Fill(ctx, a.Element(), a.Text)
	case "fill_and_submit":
		return "", s.FillAndSubmit(ctx, a.Element(), a.Text)
	case "press":
		return "", s.Press(ctx, a.Element(), a.Key)
	case "select":
		return "", s.Select(ctx, a.Element(), a.Value)
	case "drag":
		return "", s.Drag(ctx, a.Element(), a.Target())
	case "mouse_click":
		return "", s.MouseClick(ctx, *a.X, *a.Y)
	case "key":
		return "", s.Key(ctx, a.Key)
	case "scroll":
		return "", s.Scroll(ctx, a.Direction)
	case "find":
		return "", s.Find(ctx, a.Text)
	case "back":
		return "", s.Back(ctx)
	case "switch_tab":
		return "", s.SwitchTab(ctx, *a.Tab)
	case "dialog":
		s.AnswerNextDialog(browser.DialogAnswer{Accept: *a.Accept, Text: a.Text})
		return "", nil
	case "wait":
		return "", s.Wait(ctx, a.Selector)
	case "extract":
		return s.Extract(ctx, a.Selector)
	case "finish":
		return "", nil
	}
	return "", fmt.Errorf("unknown action %q", a.Action)
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
