package queue

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

func TestPanicLoggedWithStackAndTaskID(t *testing.T) {
	b := setup(t)
	var logs testsupport.SyncBuffer
	b.log = slog.New(slog.NewJSONHandler(&logs, nil))
	ctx := context.Background()
	NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{codeTask("boom")}, nil)
	h := HandlerFunc(func(ctx context.Context, m *Message) error { panicInHandler(); return nil })
	runConsumer(t, b.consumer("c", h, nil))

	var rec map[string]any
	eventually(t, "panic logged", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `"handler panicked"`) {
				return json.Unmarshal([]byte(line), &rec) == nil
			}
		}
		return false
	})
	if rec["task_id"] != "boom" || rec["entry_id"] == nil || rec["panic"] != "handler bug" {
		t.Errorf("panic log = %v, want task_id boom, entry_id and panic \"handler bug\"", rec)
	}
	stack, _ := rec["stack"].(string)
	if !strings.Contains(stack, "panicInHandler") || !strings.Contains(stack, "goroutine") {
		t.Errorf("stack does not show where the handler panicked:\n%s", stack)
	}
}

func panicInHandler() { panic("handler bug") }
