package queue

import "github.com/redis/go-redis/v9"

// luaBury is shared by the scripts that dead-letter: it copies an entry's
// original fields (without the history fields of an earlier burial) to the
// dead-letter stream with its history, then acks and deletes the entry and
// its error note.
const luaBury = `
local function bury(stream, dead, group, id, fields, deliveries, lastErr, errKey)
  local t = redis.call('TIME')
  local add = {}
  for j = 1, #fields, 2 do
    local k = fields[j]
    if k ~= 'source_stream' and k ~= 'source_id' and k ~= 'deliveries' and k ~= 'last_error' and k ~= 'dead_at' then
      add[#add+1] = k
      add[#add+1] = fields[j+1]
    end
  end
  redis.call('XADD', dead, '*', 'source_stream', stream, 'source_id', id,
    'deliveries', deliveries, 'last_error', lastErr, 'dead_at', t[1], unpack(add))
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('DEL', errKey)
end
`

// reclaimScript takes over entries whose holder stopped renewing its lease.
// Atomically, per idle entry: an entry deleted from the stream is acked (so
// it does not loop); an entry delivered MaxDeliveries times is copied to the
// dead-letter stream with its history and acked; any other is XCLAIMed to the
// caller (incrementing its delivery count).
//
// KEYS: 1 stream, 2 dead-letter stream.
// ARGV: 1 group, 2 consumer, 3 min idle ms, 4 count, 5 max deliveries,
// 6 last-error key prefix (stream included).
// Returns a list of {kind, id, deliveries, fields-or-error}, kind one of
// "claimed", "dead", "deleted".
var reclaimScript = redis.NewScript(luaBury + `
local stream, dead = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local minIdle, count, maxDeliveries = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local errPrefix = ARGV[6]
local pending = redis.call('XPENDING', stream, group, 'IDLE', minIdle, '-', '+', count)
local out = {}
for _, p in ipairs(pending) do
  local id, owner, n = p[1], p[2], tonumber(p[4])
  local errKey = errPrefix .. id
  local entry = redis.call('XRANGE', stream, id, id)
  if #entry == 0 then
    redis.call('XACK', stream, group, id)
    redis.call('DEL', errKey)
    out[#out+1] = {'deleted', id, n, ''}
  elseif n >= maxDeliveries then
    local lastErr = redis.call('GET', errKey)
    if not lastErr then
      lastErr = 'consumer ' .. owner .. ' stopped renewing its lease (crashed or hung)'
    end
    bury(stream, dead, group, id, entry[1][2], n, lastErr, errKey)
    out[#out+1] = {'dead', id, n, lastErr}
  else
    local claimed = redis.call('XCLAIM', stream, group, consumer, minIdle, id)
    if #claimed > 0 and claimed[1] then
      out[#out+1] = {'claimed', id, n + 1, claimed[1][2]}
    end
  end
end
return out
`)

// deadLetterScript moves one entry held by the caller to the dead-letter
// stream (used for entries that can never succeed, e.g. an invalid task).
// KEYS: 1 stream, 2 dead-letter stream. ARGV: 1 group, 2 id, 3 deliveries,
// 4 reason, 5 last-error key.
var deadLetterScript = redis.NewScript(luaBury + `
local stream, dead = KEYS[1], KEYS[2]
local group, id = ARGV[1], ARGV[2]
local entry = redis.call('XRANGE', stream, id, id)
if #entry > 0 then
  bury(stream, dead, group, id, entry[1][2], ARGV[3], ARGV[4], ARGV[5])
else
  redis.call('XACK', stream, group, id)
  redis.call('DEL', ARGV[5])
end
return #entry
`)

// renewScript resets the idle time of the entries the caller still owns
// (XCLAIM JUSTID does not count a delivery) and returns the ids it no longer
// owns: another consumer reclaimed them, or they were acked or deleted.
// KEYS: 1 stream. ARGV: 1 group, 2 consumer, 3.. ids.
var renewScript = redis.NewScript(`
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if #p == 1 and p[1][2] == consumer then
    redis.call('XCLAIM', stream, group, consumer, 0, id, 'JUSTID')
  else
    lost[#lost+1] = id
  end
end
return lost
`)

// ackScript acknowledges and deletes an entry, and drops its error note.
// KEYS: 1 stream, 2 last-error key. ARGV: 1 group, 2 id.
var ackScript = redis.NewScript(`
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return n
`)

// delIdleConsumerScript deletes a consumer only if it has no pending entries.
// KEYS: 1 stream. ARGV: 1 group, 2 consumer. Returns 1 when deleted.
var delIdleConsumerScript = redis.NewScript(`
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
`)
