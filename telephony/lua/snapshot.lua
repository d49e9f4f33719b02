-- KEYS: status_log, agent keys...   ARGV: now, ids...
-- Settles and reads every agent in one step, so the snapshot is consistent.
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i]
  local status = settle(KEYS[i], id, now, KEYS[1])
  if status then
    local f = redis.call('HMGET', KEYS[i], 'idle_since', 'last_offered_at', 'misses')
    out[#out + 1] = {id, status, f[1] or '0', f[2] or '0', f[3] or '0'}
  end
end
return out
