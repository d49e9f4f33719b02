-- KEYS: the queue's handle times, the queue's line.   ARGV: seconds, how many to keep.
-- Remember one handle time (newest first, the last ARGV[2] kept); returns the line's length.
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return redis.call('ZCARD', KEYS[2])
