-- KEYS: call key, the call's tried set, the caller's last-agent key ('' when the number is
-- unknown), status_log (the agents' keys are named from its prefix: see free_rows)
-- ARGV: ttl, now, number of (field, value) pairs to set first, the pairs, the queue's agent ids...
-- A dial attempt begins: the call takes the given fields (a new queue restarts its attempts),
-- counts the attempt, and everything the routing decision needs is read in the same step:
-- the attempt number, the agents tried so far, who last served the number, and the queue's
-- agents the call can be offered to (available, not tried yet), read from the routing index
-- (free_rows). One round trip per routed call instead of four.
local call_key, tried_key, last_key, log_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, now = ARGV[1], tonumber(ARGV[2])
local pairs_count = tonumber(ARGV[3])
if redis.call('EXISTS', call_key) == 1 then set_pairs(call_key, 4, pairs_count) end
local attempt = redis.call('HINCRBY', call_key, 'attempt', 1)
redis.call('EXPIRE', call_key, ttl)
local last = false
if last_key ~= '' then last = redis.call('GET', last_key) end
local tried = redis.call('SMEMBERS', tried_key)
local skip = {}
for _, id in ipairs(tried) do skip[id] = true end
return {attempt, tried, last, free_rows(log_key, {unpack(ARGV, 4 + 2 * pairs_count)}, now, ARGV[2], skip)}
