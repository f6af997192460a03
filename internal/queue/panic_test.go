package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/agentdataplatform/adp/internal/core"
)

// syncBuffer is a bytes.Buffer safe for the consumer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPanicLoggedWithStackAndTaskID(t *testing.T) {
	b := setup(t)
	var logs syncBuffer
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
