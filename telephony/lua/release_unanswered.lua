-- KEYS: status_log, agents claimed for the call...   ARGV: now, call_sid, except_agent, ids...
local now_s, call_sid, except_agent = ARGV[1], ARGV[2], ARGV[3]
local keys, ids = {}, {}
for i = 2, #KEYS do
  keys[#keys + 1] = KEYS[i]
  ids[#ids + 1] = ARGV[i + 2]
end
return release_ringing(KEYS[1], keys, ids, call_sid, except_agent, tonumber(now_s), now_s,
  'call:' .. call_sid)
