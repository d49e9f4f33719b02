-- KEYS: call key.   ARGV: ttl, now, number of (field, value) pairs, the pairs.
-- Store (or extend) a call: created_at is set once, the fields are written, the TTL renewed.
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[2])
local pairs_count = tonumber(ARGV[3])
for i = 1, pairs_count do
  redis.call('HSET', KEYS[1], ARGV[2 + 2 * i], ARGV[3 + 2 * i])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
