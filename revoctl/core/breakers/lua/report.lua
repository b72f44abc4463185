-- Store one process's statistics under a key that expires, and index it by report time.
-- KEYS[1]  the process's key
-- KEYS[2]  the index: sorted set of process ids by last report (server time)
-- ARGV[1]  process id
-- ARGV[2]  the report (JSON)
-- ARGV[3]  milliseconds the report is kept
-- Entries of the index older than that are dropped (their keys have expired), and the
-- index itself expires when no process has reported for that long.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]) / 1000)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
