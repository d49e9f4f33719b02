-- Shared by the live-state scripts (state.py prepends it). Two ideas live here:
-- settle(): an ended wrap-up or an expired reservation becomes available when the agent
-- is next touched, so nothing needs a timer and no agent stays reserved forever;
-- log_change(): every status change is appended to one capped stream, so
-- "who changed my status" always has an answer.

-- Redis 6.2 refuses writes after XADD (a "random" command) unless scripts replicate
-- effects; Redis 7 always does and keeps this call as a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local LOG_MAXLEN = 10000

local function log_change(log_key, agent, from, to, by, at, call_sid)
  redis.call('XADD', log_key, 'MAXLEN', '~', LOG_MAXLEN, '*',
    'agent', agent, 'from', from, 'to', to, 'by', by, 'at', at, 'call_sid', call_sid or '')
end

-- Writes `count` (field, value) pairs of ARGV, the first at ARGV[first], into the hash `key`.
local function set_pairs(key, first, count)
  if count > 0 then redis.call('HSET', key, unpack(ARGV, first, first + 2 * count - 1)) end
end

local function num(value)
  return tonumber(value) or 0
end

local function word(value)  -- a number field as one word: missing or empty reads as 0
  if not value or value == '' then return '0' end
  return value
end

-- The routing index, beside the agents' own hashes: `free_agents:packed` (a hash: each available
-- agent's routing numbers idle_since, last_offered_at, misses, packed as three little-endian
-- doubles: 24 bytes, see routing_numbers) and `agent_timers` (a sorted set:
-- each ringing or wrapping-up agent, scored by when that lapses). A dial then reads one hash
-- for a whole queue (free_rows) instead of every agent's. Every write to an agent's status or
-- routing fields is followed by index_agent in the same script, so the index never disagrees
-- with the hashes; sync_agents re-indexes every agent it is given (after an upgrade, or any
-- loss). Its key names follow the status log's (one prefix: `Keys` in state.py names them too).
local function key_prefix(log_key)  -- the hotline's key prefix, read off the status log's key
  return string.sub(log_key, 1, #log_key - #'status_log')
end

local function index_keys(log_key)
  local prefix = key_prefix(log_key)
  return prefix .. 'free_agents:packed', prefix .. 'agent_timers'
end

-- An available agent's routing numbers as the index keeps them. Packed, not words: a dial
-- hands a queue's numbers to Python as one string, which unpacks them whole; parsing a
-- hundred agents' words cost the web process more than the rest of the dial's reading.
local function routing_numbers(idle_since, last_offered_at, misses)
  return struct.pack('<ddd', num(idle_since), num(last_offered_at), num(misses))
end

local function index_agent(log_key, key, id)
  local free, timers = index_keys(log_key)
  local f = redis.call('HMGET', key, 'status', 'idle_since', 'last_offered_at', 'misses', 'ring_until',
    'wrap_up_until')
  local status = f[1]
  if status == 'available' then
    redis.call('HSET', free, id, routing_numbers(f[2], f[3], f[4]))
    redis.call('ZREM', timers, id)
    return
  end
  redis.call('HDEL', free, id)
  if status == 'ringing' then
    redis.call('ZADD', timers, num(f[5]), id)
  elseif status == 'wrap_up' then
    redis.call('ZADD', timers, num(f[6]), id)
  else
    redis.call('ZREM', timers, id)
  end
end

-- Returns the agent's status after lazy expiries, or nil when the agent does not exist.
-- The transition is dated when it really happened (wrap_up_until / ring_until), not "now".
local function settle(key, agent, now, log_key)
  local f = redis.call('HMGET', key, 'status', 'ring_until', 'wrap_up_until', 'call_sid')
  local status = f[1]
  if not status then return nil end
  if status == 'wrap_up' and now >= num(f[3]) then
    redis.call('HSET', key, 'status', 'available', 'status_since', f[3])
    log_change(log_key, agent, 'wrap_up', 'available', 'rule:wrap_up_ended', f[3], '')
    index_agent(log_key, key, agent)
    return 'available'
  end
  if status == 'ringing' and now >= num(f[2]) then
    -- Keep the call in expired_sid: a late no-answer still counts the miss, and a late
    -- answer (whisper accepted just after expiry) can still be marked on the call.
    redis.call('HSET', key, 'status', 'available', 'status_since', f[2],
      'call_sid', '', 'expired_sid', f[4] or '')
    log_change(log_key, agent, 'ringing', 'available', 'rule:ring_expired', f[2], f[4])
    index_agent(log_key, key, agent)
    return 'available'
  end
  return status
end

-- Frees agents still ringing for call_sid (ring-all: someone else answered, or the caller
-- left), and one on_call for it other than except_agent: they accepted the whisper but the
-- call never connected (the caller left during it). Not a miss: they were not needed.
local function release_ringing(log_key, keys, ids, call_sid, except_agent, now, now_s, by)
  local released = {}
  for i = 1, #keys do
    if ids[i] ~= except_agent then
      local status = settle(keys[i], ids[i], now, log_key)
      if status then
        local f = redis.call('HMGET', keys[i], 'call_sid', 'expired_sid')
        if (status == 'ringing' or status == 'on_call') and f[1] == call_sid then
          redis.call('HSET', keys[i], 'status', 'available', 'status_since', now_s,
            'call_sid', '', 'ring_until', '')
          log_change(log_key, ids[i], status, 'available', by, now_s, call_sid)
          index_agent(log_key, keys[i], ids[i])
          released[#released + 1] = ids[i]
        elseif f[2] == call_sid then
          redis.call('HSET', keys[i], 'expired_sid', '')
        end
      end
    end
  end
  return released
end

-- Settles and reads agents: id, status, idle_since, last_offered_at, misses for each, as one
-- string of words separated by spaces (five words an agent; ids and statuses have no spaces),
-- unknown ids left out. One bulk string, not five an agent: building and parsing a reply of
-- hundreds of elements cost both sides more than the words themselves. The agents' keys are
-- KEYS[first_key], KEYS[first_key + 1], ... and their ids ARGV[first_id], ... in the same
-- order. Every agent costs one HMGET (a ringing or wrapping-up one is settled: a second read),
-- so a dial reads the routing index instead (free_rows).
local function snapshot_rows(log_key, first_key, first_id, now)
  local out, n = {}, 0
  for i = 0, #KEYS - first_key do
    local key, id = KEYS[first_key + i], ARGV[first_id + i]
    local f = redis.call('HMGET', key, 'status', 'idle_since', 'last_offered_at', 'misses')
    local status = f[1]
    if status == 'ringing' or status == 'wrap_up' then status = settle(key, id, now, log_key) end
    if status and status ~= '' then
      out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = id, status, word(f[2]), word(f[3]), word(f[4])
      n = n + 5
    end
  end
  return table.concat(out, ' ')
end

-- What a dial decision can use: the agents of `ids` (a queue's, in its order) who are
-- available and not in `skip` (the ids the call already tried), as two strings: their ids
-- separated by spaces, and their routing numbers (the index's packed values, in the same
-- order, concatenated). Read from the routing index in one command for the whole queue, not
-- one read an agent. A big queue
-- whose index is not much bigger reads the index whole (HGETALL): a small hash is one list
-- inside Redis, and an HMGET walks it for each field, a cost that grows with the square of the
-- agents; otherwise an HMGET of the queue's ids. First, a ringing or wrapping-up agent of the
-- queue whose time is up (`agent_timers`) is settled, as snapshot_rows would; one of another
-- queue is left to its own dials (or the dispatcher's snapshot). The agents' keys are named
-- from the log's prefix, as the index's are: a dial sends only the ids.
local FREE_READ_WHOLE = 16  -- a queue of more agents reads the whole index, if at most 4 times its size

local function free_rows(log_key, ids, now, now_s, skip)
  local count = #ids
  if count == 0 then return {'', ''} end
  local free, timers = index_keys(log_key)
  local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now_s)
  if #due > 0 then
    local member = {}
    for i = 1, count do member[ids[i]] = true end
    local agent_prefix = key_prefix(log_key) .. 'agent:'
    for _, id in ipairs(due) do
      if member[id] then settle(agent_prefix .. id, id, now, log_key) end
    end
  end
  local numbers_of = {}
  if count > FREE_READ_WHOLE and redis.call('HLEN', free) <= 4 * count then
    local flat = redis.call('HGETALL', free)
    for i = 1, #flat, 2 do numbers_of[flat[i]] = flat[i + 1] end
  else
    local found = redis.call('HMGET', free, unpack(ids))
    for i = 1, count do numbers_of[ids[i]] = found[i] end
  end
  local found_ids, numbers, n = {}, {}, 0
  for i = 1, count do
    local id = ids[i]
    local packed = numbers_of[id]
    if packed and not skip[id] then
      n = n + 1
      found_ids[n], numbers[n] = id, packed
    end
  end
  return {table.concat(found_ids, ' '), table.concat(numbers)}
end

-- The call rings these claimed agents from now: they count as tried, and a call we know
-- remembers whom it rings and since when (a stray request must not create a call hash
-- without its TTL).
local function note_dialled(call_key, tried_key, ttl, ids, now_s)
  if #ids == 0 then return end
  redis.call('SADD', tried_key, unpack(ids))
  redis.call('EXPIRE', tried_key, ttl)
  if redis.call('EXISTS', call_key) == 1 then
    redis.call('HSET', call_key, 'claimed', table.concat(ids, ','), 'dial_started_at', now_s,
      'answered_by', '')
    redis.call('EXPIRE', call_key, ttl)
  end
end
