package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
)

// enqueueScript adds a batch of attempts, each only if its dedup member is
// new to the dedup set, and optionally records the producer's input
// position in the same atomic step, so a crash between the two cannot
// happen.
//
// KEYS: 1 dedup set, 2 position hash (unused when ARGV[3] == "0"),
// 3.. the streams, in core.Streams order.
// ARGV: 1 submitted_at, 2 arguments per attempt (5 or 6), 3 number of
// position fields pairs, then the pairs, then per attempt: dedup member
// (core.DispatchedMember), stream index (1-based into KEYS[3..]), task JSON,
// priority, kind (core.Kind) and, when ARGV[2] is 6, the sample index (""
// for a task of one attempt). An entry without a sample index has no sample
// field, as before attempts existed; a batch without a task of several
// attempts sends 5 arguments per task, so samples = 1 costs what it did.
// Returns one integer per attempt: 1 enqueued, 0 duplicate.
var enqueueScript = redis.NewScript(`
local submitted = ARGV[1]
local stride = tonumber(ARGV[2])
local npos = tonumber(ARGV[3])
local i = 4
if npos > 0 then
  local pos = {}
  for j = 1, npos * 2 do pos[j] = ARGV[i + j - 1] end
  redis.call('HSET', KEYS[2], unpack(pos))
  i = i + npos * 2
end
local first = i
local ids = {}
while i <= #ARGV do
  ids[#ids+1] = ARGV[i]
  i = i + stride
end
local out = {}
if #ids == 0 then return out end
-- One membership check and one SADD for the whole batch: per-task calls
-- dominate the cost of this script.
local known = redis.call('SMISMEMBER', KEYS[1], unpack(ids))
local seen, new = {}, {}
for k = 1, #ids do
  local id = ids[k]
  if known[k] == 1 or seen[id] then
    out[k] = 0
  else
    seen[id] = true
    new[#new+1] = id
    local a = first + (k - 1) * stride
    local sample = ''
    if stride == 6 then sample = ARGV[a+5] end
    if sample == '' then
      redis.call('XADD', KEYS[2 + tonumber(ARGV[a+1])], '*', 'task', ARGV[a+2], 'kind', ARGV[a+4], 'submitted_at', submitted, 'priority', ARGV[a+3])
    else
      redis.call('XADD', KEYS[2 + tonumber(ARGV[a+1])], '*', 'task', ARGV[a+2], 'kind', ARGV[a+4], 'submitted_at', submitted, 'priority', ARGV[a+3], 'sample', sample)
    end
    out[k] = 1
  end
end
if #new > 0 then redis.call('SADD', KEYS[1], unpack(new)) end
return out
`)

// Producer enqueues tasks with dedup. It is safe for concurrent use, but a
// dispatcher uses one Producer from one goroutine so that batches (and the
// positions stored with them) are applied in order.
type Producer struct {
	rdb *redis.Client
}

// NewProducer returns a Producer on rdb.
func NewProducer(rdb *redis.Client) *Producer { return &Producer{rdb: rdb} }

// Position is the producer's place in its input, stored in a Redis hash
// atomically with the batch that reaches it.
type Position struct {
	Key    string            // hash key, e.g. dispatcher:position:<file>
	Fields map[string]string // e.g. offset, line, inode
}

// Outcome of one task of a batch: each of its Samples attempts is either
// enqueued now or was enqueued before (a duplicate: by an earlier batch, an
// earlier run, or an earlier line of the same batch).
type Outcome struct {
	Enqueued   int // attempts added to the stream now
	Duplicates int // attempts skipped because they were already enqueued
}

// Duplicate reports whether nothing of the task was new.
func (o Outcome) Duplicate() bool { return o.Enqueued == 0 }

// Enqueue adds tasks (already validated), one stream entry per attempt
// (k = 0..Samples-1, dedup per attempt), in one atomic script call and
// returns one Outcome per task. pos, if not nil, is stored in the same call.
func (p *Producer) Enqueue(ctx context.Context, tasks []core.TaskSpec, pos *Position) ([]Outcome, error) {
	keys, args, err := p.scriptArgs(tasks, pos)
	if err != nil {
		return nil, err
	}
	res, err := enqueueScript.Run(ctx, p.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("enqueue %d tasks (first %q): %w", len(tasks), firstID(tasks), err)
	}
	return outcomes(tasks, res), nil
}

// Batch is one call of a pipelined EnqueueBatches.
type Batch struct {
	Tasks    []core.TaskSpec
	Position *Position
}

// EnqueueBatches sends several batches in one round trip (a pipeline of
// script calls, applied in order). It is how the dispatcher reaches ingest
// rates near Redis' own pipelined XADD.
func (p *Producer) EnqueueBatches(ctx context.Context, batches []Batch) ([][]Outcome, error) {
	if len(batches) == 0 {
		return nil, nil
	}
	if err := enqueueScript.Load(ctx, p.rdb).Err(); err != nil {
		return nil, fmt.Errorf("load enqueue script: %w", err)
	}
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batches))
	for i, b := range batches {
		keys, args, err := p.scriptArgs(b.Tasks, b.Position)
		if err != nil {
			return nil, err
		}
		cmds[i] = enqueueScript.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("enqueue %d batches (first task %q): %w", len(batches), firstID(batches[0].Tasks), err)
	}
	out := make([][]Outcome, len(batches))
	for i, c := range cmds {
		res, err := c.Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("enqueue batch %d: %w", i, err)
		}
		out[i] = outcomes(batches[i].Tasks, res)
	}
	return out, nil
}

func (p *Producer) scriptArgs(tasks []core.TaskSpec, pos *Position) ([]string, []any, error) {
	keys := make([]string, 0, 2+len(core.Streams))
	keys = append(keys, core.KeyDispatched, "")
	keys = append(keys, core.Streams...)
	stride := 5
	for i := range tasks {
		if tasks[i].Samples > 1 {
			stride = 6
			break
		}
	}
	args := make([]any, 0, 3+stride*len(tasks))
	args = append(args, strconv.FormatFloat(core.UnixSeconds(time.Now()), 'f', 3, 64), stride)
	if pos != nil {
		keys[1] = pos.Key
		args = append(args, len(pos.Fields))
		for k, v := range pos.Fields {
			args = append(args, k, v)
		}
	} else {
		keys[1] = core.KeyDispatched // unused; a real key keeps cluster slot checks happy
		args = append(args, 0)
	}
	for i := range tasks {
		t := &tasks[i]
		data, err := t.MarshalLine()
		if err != nil {
			return nil, nil, fmt.Errorf("encode task %q: %w", t.TaskID, err)
		}
		kind := t.Kind()
		if !kind.Valid() {
			return nil, nil, fmt.Errorf("enqueue task %q: not validated (its constraints decide no kind)", t.TaskID)
		}
		stream := streamIndex(core.StreamFor(t.TaskType))
		if t.Samples <= 1 {
			args = append(args, t.TaskID, stream, data, t.Priority, string(kind))
			if stride == 6 {
				args = append(args, "")
			}
			continue
		}
		for k := range t.Samples {
			args = append(args, core.DispatchedMember(t.TaskID, k), stream, data, t.Priority, string(kind), strconv.Itoa(k))
		}
	}
	return keys, args, nil
}

func streamIndex(stream string) int {
	for i, s := range core.Streams {
		if s == stream {
			return i + 1
		}
	}
	panic("queue: no stream " + stream)
}

// outcomes folds the script's per-attempt results into one Outcome per task.
func outcomes(tasks []core.TaskSpec, res []int64) []Outcome {
	out := make([]Outcome, len(tasks))
	j := 0
	for i := range tasks {
		for range max(tasks[i].Samples, 1) {
			if j < len(res) && res[j] == 1 {
				out[i].Enqueued++
			} else {
				out[i].Duplicates++
			}
			j++
		}
	}
	return out
}

func firstID(tasks []core.TaskSpec) string {
	if len(tasks) == 0 {
		return ""
	}
	return tasks[0].TaskID
}
