-- KEYS: status_log, agent key.   ARGV: now, id, call_sid, miss_limit.
-- Counts one miss per (agent, call): the miss clears the agent's link to the call, so a
-- repeated callback finds nothing to count. Returns {status, misses}.
local log_key, key = KEYS[1], KEYS[2]
local now_s, id, call_sid, miss_limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local status = settle(key, id, tonumber(now_s), log_key)
if not status then return {'', 0} end
local f = redis.call('HMGET', key, 'call_sid', 'expired_sid', 'misses')
local misses = num(f[3])
-- An agent on_call for this call answered the whisper but the call never connected (they hung
-- up during it): declined, so a miss like not answering, and freed (nothing else would free
-- them: on_call has no timer).
local holds_this = (status == 'ringing' or status == 'on_call') and f[1] == call_sid
if not (holds_this or f[2] == call_sid) then return {status, misses} end
misses = misses + 1
-- Either ringing for this call, or its ring expired and settled to available (claims and
-- people clear expired_sid, so nothing else can match).
local new, by = 'available', 'call:' .. call_sid
if miss_limit > 0 and misses >= miss_limit then new, by = 'away', 'rule:miss_limit' end
redis.call('HSET', key, 'misses', misses, 'expired_sid', '', 'call_sid', '', 'ring_until', '')
if new ~= status then
  redis.call('HSET', key, 'status', new, 'status_since', now_s)
  log_change(log_key, id, status, new, by, now_s, call_sid)
end
index_agent(log_key, key, id)
return {new, misses}
