-- KEYS: status_log, agent key.   ARGV: now, id, call_sid, wrap_up_until.
-- Only the call the agent holds can release it, so a repeated or stale callback is a no-op.
local log_key, key = KEYS[1], KEYS[2]
local now_s, id, call_sid, wrap_up_until = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_s)
local status = settle(key, id, now, log_key)
if not status then return 0 end
local f = redis.call('HMGET', key, 'call_sid', 'expired_sid')
local holds = (status == 'on_call' or status == 'ringing') and f[1] == call_sid
local answered_late = status == 'available' and f[2] == call_sid
if not (holds or answered_late) then return 0 end
local new = 'available'
if tonumber(wrap_up_until) > now then new = 'wrap_up' end
redis.call('HSET', key, 'status', new, 'status_since', now_s, 'call_sid', '', 'expired_sid', '',
  'ring_until', '', 'wrap_up_until', wrap_up_until, 'misses', 0, 'idle_since', wrap_up_until)
redis.call('HINCRBY', key, 'calls_today', 1)
if new ~= status then
  log_change(log_key, id, status, new, 'call:' .. call_sid, now_s, call_sid)
end
return 1
