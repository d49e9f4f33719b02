-- KEYS: a fixed-window counter.   ARGV: seconds the window lasts
-- One hit; the window starts with its first hit. The expiry is set whenever the key has none,
-- so a counter can never outlive its window (a SET NX EX + INCR pair could, if the key
-- expired between the two).
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
