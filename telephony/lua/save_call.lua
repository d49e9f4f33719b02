-- KEYS: call key.   ARGV: ttl, now, number of (field, value) pairs, the pairs.
-- Store (or extend) a call: created_at is set once, the fields are written, the TTL renewed.
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[2])
set_pairs(KEYS[1], 4, tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
