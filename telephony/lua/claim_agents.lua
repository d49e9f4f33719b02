-- KEYS: status_log, claimed set of the call, agent keys (candidates, in order)...
-- ARGV: now, call_sid, count, ring_until, call ttl, ids...
-- The whole walk is one script, so no two calls can ever hold the same agent.
local log_key, claimed_key = KEYS[1], KEYS[2]
local now_s, call_sid, count, ring_until, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local now = tonumber(now_s)
local claimed = {}
for i = 3, #KEYS do
  if #claimed >= count then break end
  local id = ARGV[i + 3]
  if settle(KEYS[i], id, now, log_key) == 'available' then
    redis.call('HSET', KEYS[i], 'status', 'ringing', 'status_since', now_s, 'call_sid', call_sid,
      'expired_sid', '', 'ring_until', ring_until, 'last_offered_at', now_s)
    log_change(log_key, id, 'available', 'ringing', 'call:' .. call_sid, now_s, call_sid)
    redis.call('SADD', claimed_key, id)
    claimed[#claimed + 1] = id
  end
end
if #claimed > 0 then redis.call('EXPIRE', claimed_key, ttl) end
return claimed
