-- KEYS: status_log, agent key, other agents claimed for the call...
-- ARGV: now, id, call_sid, other ids...
-- The whisper was accepted: the agent takes the call, the rest of a ring-all is freed.
local log_key, key = KEYS[1], KEYS[2]
local now_s, id, call_sid = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(now_s)
local status = settle(key, id, now, log_key)
if not status then return 0 end
local f = redis.call('HMGET', key, 'call_sid', 'expired_sid')
if status == 'on_call' and f[1] == call_sid then return 1 end
if not ((status == 'ringing' and f[1] == call_sid) or (status == 'available' and f[2] == call_sid)) then
  return 0
end
redis.call('HSET', key, 'status', 'on_call', 'status_since', now_s, 'call_sid', call_sid,
  'expired_sid', '', 'ring_until', '')
log_change(log_key, id, status, 'on_call', 'call:' .. call_sid, now_s, call_sid)
local keys, ids = {}, {}
for i = 3, #KEYS do
  keys[#keys + 1] = KEYS[i]
  ids[#ids + 1] = ARGV[i + 1]
end
release_ringing(log_key, keys, ids, call_sid, id, now, now_s, 'call:' .. call_sid)
return 1
