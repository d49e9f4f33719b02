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

-- Returns the agent's status after lazy expiries, or nil when the agent does not exist.
-- The transition is dated when it really happened (wrap_up_until / ring_until), not "now".
local function settle(key, agent, now, log_key)
  local f = redis.call('HMGET', key, 'status', 'ring_until', 'wrap_up_until', 'call_sid')
  local status = f[1]
  if not status then return nil end
  if status == 'wrap_up' and now >= num(f[3]) then
    redis.call('HSET', key, 'status', 'available', 'status_since', f[3])
    log_change(log_key, agent, 'wrap_up', 'available', 'rule:wrap_up_ended', f[3], '')
    return 'available'
  end
  if status == 'ringing' and now >= num(f[2]) then
    -- Keep the call in expired_sid: a late no-answer still counts the miss, and a late
    -- answer (whisper accepted just after expiry) can still be marked on the call.
    redis.call('HSET', key, 'status', 'available', 'status_since', f[2],
      'call_sid', '', 'expired_sid', f[4] or '')
    log_change(log_key, agent, 'ringing', 'available', 'rule:ring_expired', f[2], f[4])
    return 'available'
  end
  return status
end

-- Frees agents still ringing for call_sid (ring-all: someone else answered, or the caller
-- left). Not a miss: they were not needed.
local function release_ringing(log_key, keys, ids, call_sid, except_agent, now, now_s, by)
  local released = {}
  for i = 1, #keys do
    if ids[i] ~= except_agent then
      local status = settle(keys[i], ids[i], now, log_key)
      if status then
        local f = redis.call('HMGET', keys[i], 'call_sid', 'expired_sid')
        if status == 'ringing' and f[1] == call_sid then
          redis.call('HSET', keys[i], 'status', 'available', 'status_since', now_s,
            'call_sid', '', 'ring_until', '')
          log_change(log_key, ids[i], 'ringing', 'available', by, now_s, call_sid)
          released[#released + 1] = ids[i]
        elseif f[2] == call_sid then
          redis.call('HSET', keys[i], 'expired_sid', '')
        end
      end
    end
  end
  return released
end

-- Settles and reads agents for routing: id, status, idle_since, last_offered_at, misses for each,
-- as one string of words separated by spaces (five words an agent; ids and statuses have no
-- spaces), unknown ids left out. One bulk string, not five an agent: building and parsing a
-- reply of hundreds of elements cost both sides more than the words themselves. The
-- agents' keys are KEYS[first_key], KEYS[first_key + 1], ... and their ids ARGV[first_id], ...
-- in the same order. Given `skip` (a set of ids: those the call already tried), only available
-- agents not in it are returned: all a dial decision can use. This runs for every agent of a
-- queue on every routed call, so an agent costs one HMGET; only a ringing or wrapping-up one is
-- settled (a second read).
local function word(value)  -- a number field as one word: missing or empty reads as 0
  if not value or value == '' then return '0' end
  return value
end

local function snapshot_rows(log_key, first_key, first_id, now, skip)
  local out, n = {}, 0
  for i = 0, #KEYS - first_key do
    local key, id = KEYS[first_key + i], ARGV[first_id + i]
    local f = redis.call('HMGET', key, 'status', 'idle_since', 'last_offered_at', 'misses')
    local status = f[1]
    if status == 'ringing' or status == 'wrap_up' then status = settle(key, id, now, log_key) end
    if status and status ~= '' and (not skip or (status == 'available' and not skip[id])) then
      out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = id, status, word(f[2]), word(f[3]), word(f[4])
      n = n + 5
    end
  end
  return table.concat(out, ' ')
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
