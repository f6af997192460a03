package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
)

// The producer writes each entry's kind beside its task; the consumer hands
// the task on with the kind of its own parse, takes an entry of an older
// producer (no kind field) as before, and dead-letters an entry whose kind
// is not its task's.
func TestEntryKind(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	parse := func(line string) core.TaskSpec {
		t.Helper()
		task, err := core.ParseTask([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	program := parse(`{"task_id":"prog","task_type":"reasoning","description":"x","samples":2}`)
	workspace := parse(`{"task_id":"ws","task_type":"code","description":"x","constraints":{"files":{"a":"b"},"test_command":"true"}}`)
	web := parse(`{"task_id":"site","task_type":"web","description":"x","constraints":{"start_url":"http://127.0.0.1/"}}`)
	if _, err := NewProducer(b.rdb).Enqueue(ctx, []core.TaskSpec{program, workspace, web}, nil); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, stream := range core.Streams {
		msgs, err := b.rdb.XRange(ctx, stream, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			task := parse(m.Values[FieldTask].(string))
			kind, _ := m.Values[FieldKind].(string)
			sample, _ := m.Values[FieldSample].(string)
			kinds[task.TaskID+"/"+sample] = stream + " " + kind
		}
	}
	want := map[string]string{"prog/0": "tasks:code program", "prog/1": "tasks:code program", "ws/": "tasks:code workspace", "site/": "tasks:web web"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("entries %v, want %v", kinds, want)
	}

	// Entries written by hand or by an older producer.
	old := `{"task_id":"old","task_type":"code","description":"x","constraints":{"setup":["true"]}}`
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{FieldTask, old}})
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{FieldTask, strings.Replace(old, `"old"`, `"agrees"`, 1), FieldKind, "workspace"}})
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{FieldTask, strings.Replace(old, `"old"`, `"lies"`, 1), FieldKind, "program"}})
	b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: []any{FieldTask, strings.Replace(old, `"old"`, `"unknown"`, 1), FieldKind, "shell"}})

	var mu sync.Mutex
	seen := map[string]core.Kind{}
	h := HandlerFunc(func(_ context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[core.AttemptName(m.Task.TaskID, m.Task.SampleIndex)] = m.Task.Kind()
		return nil
	})
	runConsumer(t, b.consumer("c", h, nil))
	eventually(t, "code stream empty", func() bool { return b.rdb.XLen(ctx, core.StreamCode).Val() == 0 })
	mu.Lock()
	wantSeen := map[string]core.Kind{"prog": core.KindProgram, "prog.sample-1": core.KindProgram, "ws": core.KindWorkspace, "old": core.KindWorkspace, "agrees": core.KindWorkspace}
	if fmt.Sprint(seen) != fmt.Sprint(wantSeen) {
		t.Errorf("handled %v, want %v", seen, wantSeen)
	}
	mu.Unlock()
	dead, err := ListDead(ctx, b.rdb, 0)
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead letters %+v, %v; want the two entries whose kind is not their task's", dead, err)
	}
	for _, d := range dead {
		if !strings.HasPrefix(d.LastError, "invalid task: ") || !strings.Contains(d.LastError, `parses as a workspace task`) || d.Fields[FieldKind] == "" {
			t.Errorf("dead letter %+v: want an invalid task naming its kind, the kind field kept", d)
		}
	}
}
