-- Append a transition that changed no shared record (one process's own trip).
-- KEYS[1]  the breaker's history list (newest first)
-- ARGV[1]  the transition (JSON; its "at" is set here)
-- ARGV[2]  how many transitions to keep
local t = redis.call('TIME')
local entry = cjson.decode(ARGV[1])
entry['at'] = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('LPUSH', KEYS[1], cjson.encode(entry))
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
