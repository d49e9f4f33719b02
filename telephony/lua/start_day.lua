-- KEYS: calls_day, agent keys...   ARGV: day (the hotline's local date, ISO: compares as text)
-- Moves the counters' day forward only, and zeroes every known agent's calls_today in the same
-- step: a worker whose clock is behind cannot move it back, and no crash can leave the date
-- moved on with the counters not reset. The first day recorded resets nothing.
local previous = redis.call('GET', KEYS[1])
if previous and ARGV[1] <= previous then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if not previous then return 0 end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], 'calls_today', 0) end
end
return 1
