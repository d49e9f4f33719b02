-- KEYS: call key, the call's claimed set.   ARGV: ttl
-- The caller's leg ended: mark the call ended, once. Returns false for a call we do not know or
-- that already ended (a repeated or reordered callback), else its fields and the agents ever
-- claimed for it, so the caller can release them without reading the call again.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local ended = redis.call('HGET', KEYS[1], 'ended')
if ended and ended ~= '' then return false end
redis.call('HSET', KEYS[1], 'ended', '1')
redis.call('EXPIRE', KEYS[1], ARGV[1])
return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
