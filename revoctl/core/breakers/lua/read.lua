-- Every breaker's shared record, with the server's clock.
-- KEYS[1]  the state hash: breaker name -> record (JSON)
-- Returns  {seconds, microseconds, {name, record, name, record, ...}}
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[1])}
