package export

import (
	"strings"
	"testing"
)

const okTools = `"tools":[{"type":"function","function":{"name":"run_python","parameters":{"type":"object","properties":{"code":{"type":"string"}}}}}]`

func openAILine(messages string) string {
	return `{"messages":[` + messages + `],` + okTools + `}`
}

const (
	sys       = `{"role":"system","content":"s"}`
	user      = `{"role":"user","content":"task"}`
	call1     = `{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"run_python","arguments":"{\"code\":\"print(1)\"}"}}]}`
	tool1     = `{"role":"tool","tool_call_id":"c1","content":"1"}`
	final     = `{"role":"assistant","content":"1"}`
	twoCalls  = `{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"run_python","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"run_python","arguments":"{}"}}]}`
	toolA     = `{"role":"tool","tool_call_id":"a","content":"x"}`
	toolB     = `{"role":"tool","tool_call_id":"b","content":"y"}`
	shareTool = `"tools":"[{\"name\":\"run_python\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}]"`
)

func TestValidateOpenAI(t *testing.T) {
	t.Parallel()
	valid := map[string]string{
		"full":            openAILine(strings.Join([]string{sys, user, call1, tool1, final}, ",")),
		"no system":       openAILine(strings.Join([]string{user, final}, ",")),
		"parallel calls":  openAILine(strings.Join([]string{sys, user, twoCalls, toolB, toolA, final}, ",")),
		"ends with calls": openAILine(strings.Join([]string{sys, user, call1, tool1, twoCalls}, ",")),
		"feedback turns":  openAILine(strings.Join([]string{sys, user, call1, tool1, final, `{"role":"user","content":"Verification failed"}`, final}, ",")),
		"trailing \\n ok": openAILine(strings.Join([]string{user, final}, ",")) + "\n",
	}
	for name, line := range valid {
		if err := ValidateOpenAI([]byte(line)); err != nil {
			t.Errorf("%s: rejected a valid line: %v", name, err)
		}
	}

	broken := map[string]string{
		"not JSON":              `{"messages":[`,
		"array":                 `[1]`,
		"two lines":             openAILine(sys + ",\n" + user + "," + final),
		"unknown key":           `{"messages":[` + user + `,` + final + `],` + okTools + `,"extra":1}`,
		"no tools":              `{"messages":[` + user + `,` + final + `]}`,
		"empty":                 openAILine(""),
		"starts with assistant": openAILine(final),
		"two systems":           openAILine(strings.Join([]string{sys, sys, user, final}, ",")),
		"no final":              openAILine(strings.Join([]string{sys, user, call1, tool1}, ",")),
		"call unanswered":       openAILine(strings.Join([]string{sys, user, call1, final}, ",")),
		"answered twice":        openAILine(strings.Join([]string{sys, user, call1, tool1, tool1, final}, ",")),
		"one of two answered":   openAILine(strings.Join([]string{sys, user, twoCalls, toolA, final}, ",")),
		"wrong tool_call_id":    openAILine(strings.Join([]string{sys, user, call1, toolA, final}, ",")),
		"tool without call":     openAILine(strings.Join([]string{sys, user, tool1, final}, ",")),
		"user in the middle":    openAILine(strings.Join([]string{sys, user, call1, tool1, user, final}, ",")),
		"user after user":       openAILine(strings.Join([]string{sys, user, user, final}, ",")),
		"ends with feedback":    openAILine(strings.Join([]string{sys, user, final, user}, ",")),
		"final not last":        openAILine(strings.Join([]string{sys, user, final, final}, ",")),
		"empty final":           openAILine(strings.Join([]string{sys, user, `{"role":"assistant","content":""}`}, ",")),
		"empty user":            openAILine(strings.Join([]string{sys, `{"role":"user","content":" "}`, final}, ",")),
		"null user content":     openAILine(strings.Join([]string{sys, `{"role":"user","content":null}`, final}, ",")),
		"duplicate call id":     openAILine(strings.Join([]string{sys, user, call1, tool1, call1, tool1, final}, ",")),
		"unknown function": openAILine(strings.Join([]string{sys, user,
			strings.Replace(call1, `"run_python"`, `"rm_rf"`, 1), tool1, final}, ",")),
		"arguments as object": openAILine(strings.Join([]string{sys, user,
			`{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"run_python","arguments":{"code":"x"}}}]}`, tool1, final}, ",")),
		"arguments not JSON": openAILine(strings.Join([]string{sys, user,
			strings.Replace(call1, `"{\"code\":\"print(1)\"}"`, `"print(1)"`, 1), tool1, final}, ",")),
		"call type missing": openAILine(strings.Join([]string{sys, user,
			strings.Replace(call1, `"type":"function",`, ``, 1), tool1, final}, ",")),
		"call without id": openAILine(strings.Join([]string{sys, user,
			strings.Replace(call1, `"id":"c1",`, ``, 1), tool1, final}, ",")),
		"tool content number": openAILine(strings.Join([]string{sys, user, call1,
			`{"role":"tool","tool_call_id":"c1","content":1}`, final}, ",")),
		"bad tool name":                `{"messages":[` + user + `,` + final + `],"tools":[{"type":"function","function":{"name":"run python"}}]}`,
		"tool not function":            `{"messages":[` + user + `,` + final + `],"tools":[{"type":"code_interpreter","function":{"name":"x"}}]}`,
		"duplicate tool":               `{"messages":[` + user + `,` + final + `],"tools":[` + strings.Repeat(`{"type":"function","function":{"name":"x"}},`, 1) + `{"type":"function","function":{"name":"x"}}]}`,
		"parameters not object schema": `{"messages":[` + user + `,` + final + `],"tools":[{"type":"function","function":{"name":"x","parameters":{"type":"string"}}}]}`,
	}
	for name, line := range broken {
		if err := ValidateOpenAI([]byte(line)); err == nil {
			t.Errorf("%s: accepted a broken line:\n%s", name, line)
		}
	}
}

func shareLine(conv string) string {
	return `{"conversations":[` + conv + `],"system":"s",` + shareTool + `}`
}

const (
	human = `{"from":"human","value":"task"}`
	gpt   = `{"from":"gpt","value":"answer"}`
	fc    = `{"from":"function_call","value":"{\"name\":\"run_python\",\"arguments\":{\"code\":\"print(1)\"}}"}`
	obs   = `{"from":"observation","value":"1"}`
)

func TestValidateShareGPT(t *testing.T) {
	t.Parallel()
	valid := map[string]string{
		"tool use":         shareLine(strings.Join([]string{human, fc, obs, fc, obs, gpt}, ",")),
		"plain":            shareLine(strings.Join([]string{human, gpt}, ",")),
		"multi turn":       shareLine(strings.Join([]string{human, gpt, human, fc, obs, gpt}, ",")),
		"ends with a call": shareLine(strings.Join([]string{human, fc, obs, fc}, ",")),
		"system in conv":   `{"conversations":[{"from":"system","value":"s"},` + human + `,` + gpt + `]}`,
		"parallel calls": shareLine(strings.Join([]string{human,
			`{"from":"function_call","value":"[{\"name\":\"run_python\",\"arguments\":{}},{\"name\":\"run_python\",\"arguments\":{}}]"}`, obs, gpt}, ",")),
		"openai-wrapped tools": `{"conversations":[` + human + `,` + fc + `,` + obs + `,` + gpt +
			`],"tools":"[{\"type\":\"function\",\"function\":{\"name\":\"run_python\"}}]"}`,
	}
	for name, line := range valid {
		if err := ValidateShareGPT([]byte(line)); err != nil {
			t.Errorf("%s: rejected a valid line: %v", name, err)
		}
	}
	broken := map[string]string{
		"not JSON":               `{"conversations":`,
		"two lines":              shareLine(human + ",\n" + gpt),
		"unknown key":            `{"conversations":[` + human + `,` + gpt + `],"messages":[]}`,
		"role key":               shareLine(`{"role":"user","content":"x"},` + gpt),
		"empty":                  shareLine(""),
		"odd count":              shareLine(strings.Join([]string{human, fc, obs}, ",")),
		"gpt first":              shareLine(strings.Join([]string{gpt, human}, ",")),
		"observation first":      shareLine(strings.Join([]string{obs, gpt}, ",")),
		"two humans":             shareLine(strings.Join([]string{human, human, gpt, gpt}, ",")),
		"function_call at odd":   shareLine(strings.Join([]string{human, gpt, fc, obs}, ",")),
		"ends with observation":  shareLine(strings.Join([]string{human, fc, obs, fc, obs}, ",")),
		"fc followed by human":   shareLine(strings.Join([]string{human, fc, human, gpt}, ",")),
		"observation after gpt":  shareLine(strings.Join([]string{human, gpt, obs, gpt}, ",")),
		"system not first":       shareLine(strings.Join([]string{human, `{"from":"system","value":"s"}`}, ",")),
		"unknown role":           shareLine(strings.Join([]string{human, `{"from":"assistant","value":"x"}`}, ",")),
		"value not string":       shareLine(strings.Join([]string{human, `{"from":"gpt","value":42}`}, ",")),
		"value missing":          shareLine(strings.Join([]string{human, `{"from":"gpt"}`}, ",")),
		"empty final":            shareLine(strings.Join([]string{human, `{"from":"gpt","value":""}`}, ",")),
		"fc not JSON":            shareLine(strings.Join([]string{human, `{"from":"function_call","value":"run_python(1)"}`, obs, gpt}, ",")),
		"fc arguments as string": shareLine(strings.Join([]string{human, `{"from":"function_call","value":"{\"name\":\"run_python\",\"arguments\":\"{}\"}"}`, obs, gpt}, ",")),
		"fc unknown tool":        shareLine(strings.Join([]string{human, strings.Replace(fc, "run_python", "rm_rf", 1), obs, gpt}, ",")),
		"fc without tools":       `{"conversations":[` + strings.Join([]string{human, fc, obs, gpt}, ",") + `]}`,
		"tools not a string":     `{"conversations":[` + human + `,` + gpt + `],"tools":[]}`,
		"tools not JSON":         `{"conversations":[` + human + `,` + gpt + `],"tools":"[{"}`,
		"tool without name":      `{"conversations":[` + human + `,` + gpt + `],"tools":"[{\"description\":\"x\"}]"}`,
		"system not a string":    `{"conversations":[` + human + `,` + gpt + `],"system":1}`,
	}
	for name, line := range broken {
		if err := ValidateShareGPT([]byte(line)); err == nil {
			t.Errorf("%s: accepted a broken line:\n%s", name, line)
		}
	}
}
