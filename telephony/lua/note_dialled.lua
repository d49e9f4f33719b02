-- KEYS: call key, the call's tried set.   ARGV: ttl, now, claimed ids...
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
note_dialled(KEYS[1], KEYS[2], ARGV[1], ids, ARGV[2])
return 1
