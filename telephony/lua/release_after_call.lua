-- KEYS: status_log, agent key[, the queue's handle times, the queue's line, the call's key].
-- ARGV: now, id, call_sid, wrap_up_until[, handle seconds, how many handle times to keep].
-- Only the call the agent holds can release it, so a repeated or stale callback is a no-op.
-- Returns 1 if released, else 0. Given the queue's keys, the call's handle time is remembered
-- too (newest first, the last ARGV[6] kept) once per call: a call we know is marked
-- `handle_kept` (a repeated Dial action adds nothing), one we do not (expired) counts only
-- when it released the agent. The call notes who talked with it unless the whisper did, and
-- {released, the line's length} is returned: an agent who just freed up wakes the dispatcher
-- only when someone waits.
local log_key, key = KEYS[1], KEYS[2]
local now_s, id, call_sid, wrap_up_until = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_s)

local function release()
  local status = settle(key, id, now, log_key)
  if not status then return 0 end
  local f = redis.call('HMGET', key, 'call_sid', 'expired_sid')
  local holds = (status == 'on_call' or status == 'ringing') and f[1] == call_sid
  local answered_late = status == 'available' and f[2] == call_sid
  if not (holds or answered_late) then return 0 end
  local new = 'available'
  if tonumber(wrap_up_until) > now then new = 'wrap_up' end
  redis.call('HSET', key, 'status', new, 'status_since', now_s, 'call_sid', '', 'expired_sid', '',
    'ring_until', '', 'wrap_up_until', wrap_up_until, 'misses', 0, 'idle_since', wrap_up_until)
  redis.call('HINCRBY', key, 'calls_today', 1)
  index_agent(log_key, key, id)
  if new ~= status then
    log_change(log_key, id, status, new, 'call:' .. call_sid, now_s, call_sid)
  end
  return 1
end

local released = release()
if #KEYS < 4 then return released end
local first_end = released == 1
if KEYS[5] and redis.call('EXISTS', KEYS[5]) == 1 then
  -- a talk the agent's status no longer shows (set away while on the call) still counts once
  first_end = redis.call('HSETNX', KEYS[5], 'handle_kept', now_s) == 1
  -- the whisper notes who answered; when it could not (the agent was set away while ringing),
  -- the end of the talk does, so the status callback does not take the call for abandoned
  local answered = redis.call('HGET', KEYS[5], 'answered_by')
  if not answered or answered == '' then redis.call('HSET', KEYS[5], 'answered_by', id) end
end
if first_end then
  redis.call('LPUSH', KEYS[3], ARGV[5])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[6]) - 1)
end
return {released, redis.call('ZCARD', KEYS[4])}
