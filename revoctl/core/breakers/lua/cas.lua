-- Compare-and-set one breaker's record, append its transition, tell the fleet.
-- KEYS[1]  the state hash: breaker name -> record (JSON, with "version")
-- KEYS[2]  the breaker's history list (newest first)
-- ARGV[1]  breaker name
-- ARGV[2]  the version the writer read (0: no record yet)
-- ARGV[3]  the new record (JSON, version ARGV[2] + 1)
-- ARGV[4]  the transition (JSON; its "at" is set here) or "" for none
-- ARGV[5]  how many transitions to keep
-- ARGV[6]  the channel that announces changed breakers
-- Returns  {1, record, seconds, microseconds} when written,
--          {0, the stored record or "", seconds, microseconds} when another writer came first
local t = redis.call('TIME')
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local version = 0
if stored then
  version = tonumber(cjson.decode(stored)['version'])
end
if version ~= tonumber(ARGV[2]) then
  return {0, stored or '', t[1], t[2]}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  local entry = cjson.decode(ARGV[4])
  entry['at'] = tonumber(t[1]) + tonumber(t[2]) / 1000000
  redis.call('LPUSH', KEYS[2], cjson.encode(entry))
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
end
redis.call('PUBLISH', ARGV[6], ARGV[1])
return {1, ARGV[3], t[1], t[2]}
