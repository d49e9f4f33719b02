-- KEYS: call key.   ARGV: ttl, number of (field, value) pairs, the pairs, then fields to delete.
-- Updates only a call we know: a stray callback must not create a hash without its TTL.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local pairs_count = tonumber(ARGV[2])
set_pairs(KEYS[1], 3, pairs_count)
for i = 3 + 2 * pairs_count, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
