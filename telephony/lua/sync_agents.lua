-- KEYS: status_log, agents_index, agent keys...   ARGV: now, then (id, status) pairs.
-- Creates missing agents only: an existing agent's status is never overwritten here. Every
-- agent given is (re-)indexed for routing (index_agent), so an index lost or older than the
-- agents' hashes is made whole again by the next sync.
local log_key, index_key = KEYS[1], KEYS[2]
local now_s = ARGV[1]
local created = {}
for i = 3, #KEYS do
  local id = ARGV[2 * (i - 3) + 2]
  local status = ARGV[2 * (i - 3) + 3]
  redis.call('SADD', index_key, id)
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'status', status, 'status_since', now_s, 'call_sid', '',
      'expired_sid', '', 'ring_until', '', 'wrap_up_until', '', 'misses', 0,
      'last_offered_at', 0, 'idle_since', now_s, 'calls_today', 0)
    log_change(log_key, id, '', status, 'rule:sync_agents', now_s, '')
    created[#created + 1] = id
  end
  index_agent(log_key, KEYS[i], id)
end
return created
