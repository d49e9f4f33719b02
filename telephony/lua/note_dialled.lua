-- KEYS: call key, the call's tried set.   ARGV: ttl, claimed ids comma-joined, now, claimed ids...
-- The call rings these claimed agents: they count as tried, and a call we know remembers whom it
-- rings and since when (a stray request must not create a call hash without its TTL).
local call_key, tried_key, ttl = KEYS[1], KEYS[2], ARGV[1]
if #ARGV > 3 then
  redis.call('SADD', tried_key, unpack(ARGV, 4))
  redis.call('EXPIRE', tried_key, ttl)
end
if redis.call('EXISTS', call_key) == 1 then
  redis.call('HSET', call_key, 'claimed', ARGV[2], 'dial_started_at', ARGV[3], 'answered_by', '')
  redis.call('EXPIRE', call_key, ttl)
end
return 1
