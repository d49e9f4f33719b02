-- KEYS: status_log, agent keys...   ARGV: now, ids...
-- Settles and reads every agent in one step, so the snapshot is consistent.
local keys, ids = {}, {}
for i = 2, #KEYS do
  keys[#keys + 1] = KEYS[i]
  ids[#ids + 1] = ARGV[i]
end
return snapshot_rows(KEYS[1], keys, ids, tonumber(ARGV[1]))
