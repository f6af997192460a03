package queue

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// DeadEntry is one entry of the dead-letter stream.
type DeadEntry struct {
	ID           string // id in tasks:dead
	SourceStream string
	SourceID     string
	Deliveries   int
	LastError    string
	DeadAt       int64  // unix seconds
	Task         string // the task JSON as it was enqueued
	// Sample is the attempt (the entry's sample field; 0 when absent).
	Sample int
	Fields map[string]string
}

// ListDead returns up to count dead-letter entries (all when count <= 0),
// oldest first.
func ListDead(ctx context.Context, rdb *redis.Client, count int64) ([]DeadEntry, error) {
	var msgs []redis.XMessage
	var err error
	if count > 0 {
		msgs, err = rdb.XRangeN(ctx, DeadStream, "-", "+", count).Result()
	} else {
		msgs, err = rdb.XRange(ctx, DeadStream, "-", "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("XRANGE %s: %w", DeadStream, err)
	}
	out := make([]DeadEntry, 0, len(msgs))
	for _, m := range msgs {
		e := DeadEntry{ID: m.ID, Fields: map[string]string{}}
		for k, v := range m.Values {
			s, _ := v.(string)
			e.Fields[k] = s
		}
		e.SourceStream = e.Fields[FieldSourceStream]
		e.SourceID = e.Fields[FieldSourceID]
		e.Deliveries, _ = strconv.Atoi(e.Fields[FieldDeliveries])
		e.LastError = e.Fields[FieldLastError]
		e.DeadAt, _ = strconv.ParseInt(e.Fields[FieldDeadAt], 10, 64)
		e.Task = e.Fields[FieldTask]
		e.Sample, _ = strconv.Atoi(e.Fields[FieldSample])
		out = append(out, e)
	}
	return out, nil
}

// retryDeadScript moves one dead-letter entry back to its source stream with
// its original fields, atomically. KEYS: 1 dead stream. ARGV: 1 id.
// Returns the new entry id, or false when the id is not in the dead stream.
var retryDeadScript = redis.NewScript(`
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local fields = e[1][2]
local src, add = nil, {}
for j = 1, #fields, 2 do
  local k = fields[j]
  if k == 'source_stream' then src = fields[j+1]
  elseif k ~= 'source_id' and k ~= 'deliveries' and k ~= 'last_error' and k ~= 'dead_at' then
    add[#add+1] = k
    add[#add+1] = fields[j+1]
  end
end
if not src or #add == 0 then return redis.error_reply('dead-letter entry ' .. ARGV[1] .. ' has no source_stream or fields') end
local id = redis.call('XADD', src, '*', unpack(add))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
`)

// RetryDead moves the dead-letter entry id back to the stream it came from,
// as a fresh entry with its original fields (delivery count starts over). It
// returns the new entry id; found is false when id is not in tasks:dead.
func RetryDead(ctx context.Context, rdb *redis.Client, id string) (newID string, found bool, err error) {
	res, err := retryDeadScript.Run(ctx, rdb, []string{DeadStream}, id).Result()
	if err == redis.Nil {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("retry dead-letter entry %s: %w", id, err)
	}
	s, _ := res.(string)
	return s, true, nil
}

// PurgeDead deletes the dead-letter stream and returns how many entries it had.
func PurgeDead(ctx context.Context, rdb *redis.Client) (int64, error) {
	n, err := rdb.XLen(ctx, DeadStream).Result()
	if err != nil {
		return 0, fmt.Errorf("XLEN %s: %w", DeadStream, err)
	}
	if err := rdb.Del(ctx, DeadStream).Err(); err != nil {
		return 0, fmt.Errorf("DEL %s: %w", DeadStream, err)
	}
	return n, nil
}
