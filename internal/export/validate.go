package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// toolNamePattern is OpenAI's rule for function names.
var toolNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateOpenAI checks one JSONL line of the OpenAI chat fine-tuning format
// as Write produces it:
//
//   - one JSON object on one line, with only the keys messages, tools (and
//     parallel_tool_calls);
//   - tools: {"type":"function","function":{name, description?, parameters?}}
//     with unique names of 1-64 letters, digits, '_' or '-', parameters a
//     JSON schema object;
//   - messages in the order system?, user, then any number of turns: an
//     assistant message with tool_calls and one tool message per call, or
//     an assistant answer followed by a user message (feedback); the last
//     message is an assistant message, either an answer with non-empty
//     content or a call of tools (a finish tool), which is left unanswered;
//   - every tool call has a unique id, type "function", the name of a
//     declared tool and arguments that are a string holding a JSON object;
//     every tool message answers exactly one pending call of the assistant
//     message before it, and every call is answered.
func ValidateOpenAI(line []byte) error {
	var rec struct {
		Messages          []json.RawMessage `json:"messages"`
		Tools             []json.RawMessage `json:"tools"`
		ParallelToolCalls *bool             `json:"parallel_tool_calls"`
	}
	if err := decodeLine(line, &rec); err != nil {
		return err
	}
	if rec.Tools == nil {
		return errors.New(`no "tools" array`)
	}
	tools := map[string]bool{}
	for i, raw := range rec.Tools {
		var t struct {
			Type     *string         `json:"type"`
			Function json.RawMessage `json:"function"`
		}
		if err := decodeStrict(raw, &t); err != nil {
			return fmt.Errorf("tools[%d]: %w", i, err)
		}
		if t.Type == nil || *t.Type != "function" {
			return fmt.Errorf(`tools[%d]: type must be "function"`, i)
		}
		name, err := validateFunctionDef(t.Function)
		if err != nil {
			return fmt.Errorf("tools[%d].function: %w", i, err)
		}
		if tools[name] {
			return fmt.Errorf("tools[%d]: duplicate tool %q", i, name)
		}
		tools[name] = true
	}

	type toolCall struct {
		ID       *string `json:"id"`
		Type     *string `json:"type"`
		Function *struct {
			Name      *string         `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		} `json:"function"`
	}
	type message struct {
		Role       *string         `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCalls  []toolCall      `json:"tool_calls"`
		ToolCallID *string         `json:"tool_call_id"`
		Name       *string         `json:"name"`
		Weight     *int            `json:"weight"`
	}
	msgs := make([]message, len(rec.Messages))
	for i, raw := range rec.Messages {
		if err := decodeStrict(raw, &msgs[i]); err != nil {
			return fmt.Errorf("messages[%d]: %w", i, err)
		}
		if msgs[i].Role == nil {
			return fmt.Errorf("messages[%d]: no role", i)
		}
	}
	role := func(i int) string { return *msgs[i].Role }
	content := func(i int, allowNull bool) (string, error) {
		c := msgs[i].Content
		if len(c) == 0 || string(c) == "null" {
			if allowNull {
				return "", nil
			}
			return "", fmt.Errorf("messages[%d] (%s): content must be a string", i, role(i))
		}
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			return "", fmt.Errorf("messages[%d] (%s): content must be a string", i, role(i))
		}
		return s, nil
	}

	n, i := len(msgs), 0
	if n > 0 && role(0) == "system" {
		if _, err := content(0, false); err != nil {
			return err
		}
		i++
	}
	userText := func(i int) error {
		if s, err := content(i, false); err != nil {
			return err
		} else if strings.TrimSpace(s) == "" {
			return fmt.Errorf("messages[%d] (user): empty content", i)
		}
		return nil
	}
	if i >= n || role(i) != "user" {
		return fmt.Errorf("messages[%d]: want a user message after the optional system message", i)
	}
	if err := userText(i); err != nil {
		return err
	}
	i++
	ids := map[string]bool{}
	for i < n {
		if role(i) == "user" {
			// Feedback (e.g. a failed verification) answers an assistant
			// message without tool calls.
			if i == 0 || role(i-1) != "assistant" || len(msgs[i-1].ToolCalls) > 0 {
				return fmt.Errorf("messages[%d]: a user message after the first must follow an assistant answer", i)
			}
			if err := userText(i); err != nil {
				return err
			}
			i++
			continue
		}
		if role(i) != "assistant" {
			return fmt.Errorf("messages[%d]: role %q where an assistant message must come", i, role(i))
		}
		m := msgs[i]
		if m.ToolCallID != nil {
			return fmt.Errorf("messages[%d] (assistant): tool_call_id belongs on tool messages", i)
		}
		if len(m.ToolCalls) == 0 {
			s, err := content(i, false)
			if err != nil {
				return err
			}
			if strings.TrimSpace(s) == "" {
				return fmt.Errorf("messages[%d] (assistant): empty content", i)
			}
			if i == n-1 {
				return nil
			}
			if role(i+1) != "user" {
				return fmt.Errorf("messages[%d]: an assistant message without tool_calls must be the last message or be answered by a user message", i)
			}
			i++
			continue
		}
		if _, err := content(i, true); err != nil {
			return err
		}
		pending := map[string]bool{}
		for j, tc := range m.ToolCalls {
			where := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
			switch {
			case tc.ID == nil || *tc.ID == "":
				return fmt.Errorf("%s: no id", where)
			case ids[*tc.ID]:
				return fmt.Errorf("%s: duplicate id %q", where, *tc.ID)
			case tc.Type == nil || *tc.Type != "function":
				return fmt.Errorf(`%s: type must be "function"`, where)
			case tc.Function == nil || tc.Function.Name == nil:
				return fmt.Errorf("%s: no function name", where)
			case !tools[*tc.Function.Name]:
				return fmt.Errorf("%s: function %q is not in tools", where, *tc.Function.Name)
			}
			var args string
			if err := json.Unmarshal(tc.Function.Arguments, &args); err != nil || len(tc.Function.Arguments) == 0 {
				return fmt.Errorf("%s: arguments must be a JSON string", where)
			}
			if err := isJSONObject([]byte(args)); err != nil {
				return fmt.Errorf("%s: arguments: %w", where, err)
			}
			ids[*tc.ID] = true
			pending[*tc.ID] = true
		}
		i++
		if i == n {
			// The conversation ends with the model's calls (a finish
			// tool, or the step budget spent): a training target with
			// nothing to answer.
			return nil
		}
		for len(pending) > 0 {
			if i >= n || role(i) != "tool" {
				return fmt.Errorf("messages[%d]: want a tool message answering one of %d pending tool calls", i, len(pending))
			}
			id := msgs[i].ToolCallID
			if id == nil || !pending[*id] {
				return fmt.Errorf("messages[%d] (tool): tool_call_id does not name a pending call of the assistant message before it", i)
			}
			if _, err := content(i, false); err != nil {
				return err
			}
			delete(pending, *id)
			i++
		}
	}
	return errors.New("the conversation does not end with an assistant message")
}

// validateFunctionDef checks {name, description?, parameters?, strict?}
// and returns the name.
func validateFunctionDef(raw json.RawMessage) (string, error) {
	var f struct {
		Name        *string         `json:"name"`
		Description *string         `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	}
	if len(raw) == 0 {
		return "", errors.New("missing")
	}
	if err := decodeStrict(raw, &f); err != nil {
		return "", err
	}
	if f.Name == nil || !toolNamePattern.MatchString(*f.Name) {
		return "", errors.New("name must be 1-64 letters, digits, '_' or '-'")
	}
	if len(f.Parameters) > 0 {
		var p map[string]any
		if err := json.Unmarshal(f.Parameters, &p); err != nil || p == nil {
			return "", fmt.Errorf("%s: parameters must be a JSON schema object", *f.Name)
		}
		if p["type"] != "object" {
			return "", fmt.Errorf(`%s: parameters must have "type": "object"`, *f.Name)
		}
	}
	return *f.Name, nil
}

// ValidateShareGPT checks one JSONL line of LLaMA-Factory's sharegpt format
// (data/README.md and SharegptDatasetConverter in hiyouga/LLaMA-Factory):
//
//   - one JSON object on one line with the keys conversations, system
//     (string) and tools (a string holding a JSON array of function
//     definitions {name, description?, parameters?});
//   - every message is {"from", "value"} with a string value; an optional
//     "system" message may come first (LLaMA-Factory lifts it out);
//   - then, as LLaMA-Factory enforces, human or observation at odd
//     positions and gpt or function_call at even positions (1-based), with
//     an even number of messages; a record breaking this is dropped by
//     LLaMA-Factory as "abnormal";
//   - and, stricter than LLaMA-Factory, as a tool-use conversation must be:
//     it starts with human and ends with gpt or a last function_call (a
//     finish tool), every other function_call is followed by its
//     observation and every observation follows a function_call;
//   - a function_call value is a JSON object {"name", "arguments": {...}}
//     (or an array of them) naming a declared tool.
func ValidateShareGPT(line []byte) error {
	var rec struct {
		Conversations []json.RawMessage `json:"conversations"`
		System        *string           `json:"system"`
		Tools         *string           `json:"tools"`
	}
	if err := decodeLine(line, &rec); err != nil {
		return err
	}
	tools := map[string]bool{}
	if rec.Tools != nil && strings.TrimSpace(*rec.Tools) != "" {
		var defs []json.RawMessage
		if err := json.Unmarshal([]byte(*rec.Tools), &defs); err != nil {
			return fmt.Errorf("tools: must be a string holding a JSON array: %w", err)
		}
		for i, raw := range defs {
			// Accept the OpenAI wrapper too: LLaMA-Factory unwraps it.
			var wrapped struct {
				Type     string          `json:"type"`
				Function json.RawMessage `json:"function"`
			}
			if json.Unmarshal(raw, &wrapped) == nil && wrapped.Type == "function" && len(wrapped.Function) > 0 {
				raw = wrapped.Function
			}
			name, err := validateFunctionDef(raw)
			if err != nil {
				return fmt.Errorf("tools[%d]: %w", i, err)
			}
			if tools[name] {
				return fmt.Errorf("tools[%d]: duplicate tool %q", i, name)
			}
			tools[name] = true
		}
	}

	type message struct {
		From  *string `json:"from"`
		Value *string `json:"value"`
	}
	msgs := make([]message, 0, len(rec.Conversations))
	for i, raw := range rec.Conversations {
		var m message
		if err := decodeStrict(raw, &m); err != nil {
			return fmt.Errorf("conversations[%d]: %w", i, err)
		}
		if m.From == nil || m.Value == nil {
			return fmt.Errorf(`conversations[%d]: want "from" and a string "value"`, i)
		}
		if i == 0 && *m.From == fromSystem {
			continue
		}
		msgs = append(msgs, m)
	}
	offset := len(rec.Conversations) - len(msgs) // 1 when a system message was lifted
	if len(msgs) < 2 {
		return errors.New("conversations: want at least a human and a gpt message")
	}
	if len(msgs)%2 != 0 {
		return fmt.Errorf("conversations: %d messages after the system message; LLaMA-Factory needs an even number", len(msgs))
	}
	for i, m := range msgs {
		from, pos := *m.From, i+offset
		odd := i%2 == 0 // 1-based odd position
		switch {
		case odd && from != fromHuman && from != fromObservation:
			return fmt.Errorf("conversations[%d]: %q at an odd position; want human or observation", pos, from)
		case !odd && from != fromGPT && from != fromFunctionCall:
			return fmt.Errorf("conversations[%d]: %q at an even position; want gpt or function_call", pos, from)
		}
		switch from {
		case fromHuman:
			if strings.TrimSpace(*m.Value) == "" {
				return fmt.Errorf("conversations[%d] (human): empty value", pos)
			}
		case fromObservation:
			if i == 0 || *msgs[i-1].From != fromFunctionCall {
				return fmt.Errorf("conversations[%d]: observation without a function_call before it", pos)
			}
		case fromFunctionCall:
			if i+1 < len(msgs) && *msgs[i+1].From != fromObservation {
				return fmt.Errorf("conversations[%d]: function_call not followed by an observation", pos)
			}
			if err := validateShareGPTCall(*m.Value, tools); err != nil {
				return fmt.Errorf("conversations[%d] (function_call): %w", pos, err)
			}
		}
	}
	if *msgs[0].From != fromHuman {
		return fmt.Errorf("conversations[%d]: the conversation must start with human", offset)
	}
	if last := msgs[len(msgs)-1]; *last.From != fromFunctionCall && (*last.From != fromGPT || strings.TrimSpace(*last.Value) == "") {
		return fmt.Errorf("conversations[%d]: the conversation must end with a non-empty gpt message or a function_call", len(rec.Conversations)-1)
	}
	return nil
}

func validateShareGPTCall(value string, tools map[string]bool) error {
	type fnCall struct {
		Name      *string         `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	var calls []fnCall
	v := bytes.TrimSpace([]byte(value))
	switch {
	case len(v) > 0 && v[0] == '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(v, &raws); err != nil || len(raws) == 0 {
			return errors.New("value must be a JSON object or a non-empty array of them")
		}
		for _, r := range raws {
			var c fnCall
			if err := decodeStrict(r, &c); err != nil {
				return err
			}
			calls = append(calls, c)
		}
	default:
		var c fnCall
		if err := decodeStrict(v, &c); err != nil {
			return fmt.Errorf(`value must be a JSON object {"name", "arguments"}: %w`, err)
		}
		calls = append(calls, c)
	}
	for _, c := range calls {
		if c.Name == nil || *c.Name == "" {
			return errors.New("no name")
		}
		if !tools[*c.Name] {
			return fmt.Errorf("function %q is not in tools", *c.Name)
		}
		if err := isJSONObject(c.Arguments); err != nil {
			return fmt.Errorf("arguments: %w", err)
		}
	}
	return nil
}

// decodeLine decodes one JSONL line strictly: a single JSON object, no raw
// line break, no unknown key.
func decodeLine(line []byte, v any) error {
	line = bytes.TrimSuffix(line, []byte("\n"))
	if bytes.ContainsAny(line, "\r\n") {
		return errors.New("not a single line")
	}
	return decodeStrict(line, v)
}

func decodeStrict(data []byte, v any) error {
	if err := isJSONObject(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// isJSONObject reports whether data is exactly one valid JSON object.
func isJSONObject(data []byte) error {
	data = bytes.TrimSpace(data)
	if !json.Valid(data) {
		return errors.New("not valid JSON")
	}
	if len(data) == 0 || data[0] != '{' {
		return errors.New("not a JSON object")
	}
	return nil
}
