-- KEYS: call key, the call's claimed set.   Read only.
-- The call's fields and every agent claimed for it: what an agent's answer needs, at once.
return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
