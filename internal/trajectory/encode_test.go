package trajectory

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// TestEncode: raw values keep their bytes, every other field decodes to
// what it was (text that looks like a placeholder included), '<' and '&'
// are not escaped, and a raw value that is not JSON is refused.
func TestEncode(t *testing.T) {
	t.Parallel()
	tr := core.NewTrajectory(core.TaskSpec{TaskID: "enc", TaskType: core.TaskCode, Description: `"adp-raw-00-0" and <b> & co`}, "rt")
	tr.FinalResult = `"adp-raw-` // a placeholder's start in the text
	tr.Messages = []json.RawMessage{json.RawMessage(`{"role":"user","content":"x \u003c y"}`), json.RawMessage(`{ "role": "assistant",
    "content": "<&>" }`)}
	tr.Tools = json.RawMessage(`[ {"type":"function"} ]`)
	tr.ModelCalls = []core.ModelCall{{Reply: json.RawMessage(`{"content" :  "adp-raw-\u0041"}`)}, {Reply: nil}}
	tr.AddStep(core.ExecutionStep{ActionType: core.ActionCodeExecution, ActionParams: map[string]any{"code": "if a < b and c > d: print('&')"}})
	b, err := Encode(tr)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{string(tr.Messages[0]), string(tr.Messages[1]), string(tr.Tools), string(tr.ModelCalls[0].Reply),
		`"if a < b and c > d: print('&')"`, `"reply": null`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("encoded file lacks %s:\n%s", want, b)
		}
	}
	if !bytes.HasSuffix(b, []byte("}\n")) {
		t.Error("no final newline")
	}
	var back core.Trajectory
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want := *tr
	want.ModelCalls = []core.ModelCall{tr.ModelCalls[0], {Reply: json.RawMessage("null")}} // as encoding/json reads a null back
	if !reflect.DeepEqual(back, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", back, want)
	}

	tr.ModelCalls[0].Logprobs = json.RawMessage(`{"content":[`)
	if _, err := Encode(tr); err == nil || !strings.Contains(err.Error(), "logprobs") {
		t.Errorf("invalid logprobs: err %v", err)
	}
}
