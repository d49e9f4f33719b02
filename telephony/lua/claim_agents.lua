-- KEYS: status_log, claimed set of the call, call key, the call's tried set,
--       agent keys (candidates, in order)...
-- ARGV: now, call_sid, count, ring_until, call ttl, dial (1: note the dial on the call), ids...
-- The whole walk is one script, so no two calls can ever hold the same agent. With dial=1 the
-- call also notes whom it now rings (note_dialled), in the same step.
local log_key, claimed_key, call_key, tried_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now_s, call_sid, count, ring_until, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local dial = ARGV[6] == '1'
local now = tonumber(now_s)
local claimed = {}
-- A dial for a call whose caller has already gone (the status callback came first: a hang-up
-- as the menu or a Dial action was answered) claims nobody: an agent would ring for no one.
if dial and redis.call('HGET', call_key, 'ended') == '1' then return claimed end
for i = 5, #KEYS do
  if #claimed >= count then break end
  local id = ARGV[i + 2]
  if settle(KEYS[i], id, now, log_key) == 'available' then
    redis.call('HSET', KEYS[i], 'status', 'ringing', 'status_since', now_s, 'call_sid', call_sid,
      'expired_sid', '', 'ring_until', ring_until, 'last_offered_at', now_s)
    index_agent(log_key, KEYS[i], id)
    log_change(log_key, id, 'available', 'ringing', 'call:' .. call_sid, now_s, call_sid)
    redis.call('SADD', claimed_key, id)
    claimed[#claimed + 1] = id
  end
end
if #claimed > 0 then redis.call('EXPIRE', claimed_key, ttl) end
if dial then note_dialled(call_key, tried_key, ttl, claimed, now_s) end
return claimed
