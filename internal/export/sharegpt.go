package export

import (
	"fmt"
	"strings"
)

// LLaMA-Factory's sharegpt roles (the default tags of dataset_info.json).
const (
	fromHuman        = "human"
	fromGPT          = "gpt"
	fromFunctionCall = "function_call"
	fromObservation  = "observation"
	fromSystem       = "system"
)

type shareGPTRecord struct {
	Conversations []shareGPTMessage `json:"conversations"`
	System        string            `json:"system"`
	// Tools is a JSON array of {name, description, parameters}, encoded as
	// a string, as LLaMA-Factory's examples (glaive_toolcall) have it.
	Tools string `json:"tools"`
}

type shareGPTMessage struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

// shareGPTCall is the value of a function_call message: the arguments are
// a JSON object, not a string (LLaMA-Factory's function formatter reads
// {"name": ..., "arguments": {...}}).
type shareGPTCall struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

// shareGPT renders c as one sharegpt record: human, then a function_call
// and its observation per model turn, gpt for a reply in words. The roles
// alternate as LLaMA-Factory requires: human/observation at odd positions,
// gpt and function_call at even ones, an even number of messages. The
// texts are the conversation's; an assistant message's text beside tool
// calls has no place in a function_call and is left out there, and the
// results of several calls of one message are one observation.
func (c *conversation) shareGPT() ([]byte, error) {
	rec := shareGPTRecord{Conversations: make([]shareGPTMessage, 0, len(c.messages))}
	for i, m := range c.messages {
		switch {
		case m.role == "system" && i == 0:
			rec.System = m.content
		case m.role == "user":
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromHuman, Value: m.content})
		case m.role == "assistant" && len(m.calls) == 0:
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromGPT, Value: m.content})
		case m.role == "assistant":
			calls := make([]shareGPTCall, 0, len(m.calls))
			for _, tc := range m.calls {
				if tc.argsErr != nil {
					return nil, fmt.Errorf("recorded call %s: arguments: %w", tc.name, tc.argsErr)
				}
				args := tc.args
				if args == nil {
					args = map[string]any{}
				}
				calls = append(calls, shareGPTCall{Name: tc.name, Arguments: args})
			}
			var v string
			var err error
			if len(calls) == 1 {
				v, err = marshalString(calls[0])
			} else {
				v, err = marshalString(calls)
			}
			if err != nil {
				return nil, err
			}
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromFunctionCall, Value: v})
		case m.role == "tool":
			if n := len(rec.Conversations); n > 0 && rec.Conversations[n-1].From == fromObservation {
				rec.Conversations[n-1].Value += "\n\n" + m.content
				continue
			}
			rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromObservation, Value: m.content})
		default:
			return nil, fmt.Errorf("message %d: role %q has no sharegpt equivalent", i, m.role)
		}
	}
	t, err := marshalString(c.functions)
	if err != nil {
		return nil, err
	}
	rec.Tools = strings.TrimSpace(t)
	return marshal(rec)
}
