-- KEYS: status_log, agent key, call key, the caller's last-agent key ('' if none),
--       other agents claimed for the call...
-- ARGV: now, id, call_sid, call ttl, last-agent ttl, other ids...
-- The whisper was accepted: the agent takes the call, the rest of a ring-all is freed, and a
-- call we know records who answered and when (the last-agent key remembers the agent for the
-- number: sticky routing). Returns {1 when the agent holds the call (else 0), the call's
-- fields as HGETALL gives them}: the whisper names the caller from them, in the same step.
local log_key, key, call_key, last_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now_s, id, call_sid, call_ttl, last_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(now_s)

local function take()
  local status = settle(key, id, now, log_key)
  if not status then return 0 end
  local f = redis.call('HMGET', key, 'call_sid', 'expired_sid')
  if status == 'on_call' and f[1] == call_sid then return 1 end
  if not ((status == 'ringing' and f[1] == call_sid) or (status == 'available' and f[2] == call_sid)) then
    return 0
  end
  redis.call('HSET', key, 'status', 'on_call', 'status_since', now_s, 'call_sid', call_sid,
    'expired_sid', '', 'ring_until', '')
  index_agent(log_key, key, id)
  log_change(log_key, id, status, 'on_call', 'call:' .. call_sid, now_s, call_sid)
  local keys, ids = {}, {}
  for i = 5, #KEYS do
    keys[#keys + 1] = KEYS[i]
    ids[#ids + 1] = ARGV[i + 1]
  end
  release_ringing(log_key, keys, ids, call_sid, id, now, now_s, 'call:' .. call_sid)
  if redis.call('EXISTS', call_key) == 1 then
    redis.call('HSET', call_key, 'answered_by', id, 'answered_at', now_s)
    redis.call('EXPIRE', call_key, call_ttl)
  end
  if last_key ~= '' then redis.call('SET', last_key, id, 'EX', last_ttl) end
  return 1
end

local held = take()
return {held, redis.call('HGETALL', call_key)}
