-- KEYS: status_log, agent key.   ARGV: now, id, target, by.
-- A person's change. Returns {previous, current}; current ~= target means refused:
-- available is refused while on a call or ringing (the reservation must end by a rule,
-- or the agent could be claimed twice); away/offline always win (they unstick an agent).
local log_key, key = KEYS[1], KEYS[2]
local now_s, id, target, by = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local status = settle(key, id, tonumber(now_s), log_key)
if not status then return {'', ''} end
if target == 'available' and (status == 'on_call' or status == 'ringing') then
  return {status, status}
end
if target == status then
  if target == 'available' then
    redis.call('HSET', key, 'misses', 0)
    index_agent(log_key, key, id)
  end
  return {status, status}
end
redis.call('HSET', key, 'status', target, 'status_since', now_s, 'call_sid', '',
  'expired_sid', '', 'ring_until', '')
if target == 'available' then
  redis.call('HSET', key, 'misses', 0, 'idle_since', now_s)
end
index_agent(log_key, key, id)
log_change(log_key, id, status, target, by, now_s, '')
return {status, target}
