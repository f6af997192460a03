package export

import "github.com/agentdataplatform/adp/internal/llm"

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
// and its observation per model action, then gpt. The roles alternate as
// LLaMA-Factory requires: human/observation at odd positions, gpt and
// function_call at even ones, an even number of messages.
func (c conversation) shareGPT() ([]byte, error) {
	rec := shareGPTRecord{
		Conversations: make([]shareGPTMessage, 0, 2+2*len(c.calls)),
		System:        c.system,
	}
	rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromHuman, Value: c.user})
	for _, cl := range c.calls {
		args := cl.args
		if args == nil {
			args = map[string]any{}
		}
		v, err := marshalString(shareGPTCall{Name: cl.name, Arguments: args})
		if err != nil {
			return nil, err
		}
		rec.Conversations = append(rec.Conversations,
			shareGPTMessage{From: fromFunctionCall, Value: v},
			shareGPTMessage{From: fromObservation, Value: cl.observation})
	}
	rec.Conversations = append(rec.Conversations, shareGPTMessage{From: fromGPT, Value: c.final})
	tools := make([]llm.FunctionDef, 0, len(c.tools))
	for _, d := range c.tools {
		tools = append(tools, d.Function)
	}
	t, err := marshalString(tools)
	if err != nil {
		return nil, err
	}
	rec.Tools = t
	return marshal(rec)
}
