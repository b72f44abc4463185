-- The start of every limiter script (lua_source and reservation_source in
-- revoctl/core/limits/stores/_redis_lua.py put it first): the server's clock, the keys'
-- expiry, and one rule's result as a reply part.
-- Time is the server's (TIME), in seconds: no client clock is trusted.
local function server_now()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end

-- The key's expiry, in ms, for state that runs out in `seconds`: a second to spare.
local function expiry_ms(seconds)
  return math.ceil(seconds * 1000) + 1000
end

-- Keep `value` in `key` until it runs out in `seconds`, or delete the key when not `keep`.
local function save(key, keep, value, seconds)
  if keep then
    redis.call('SET', key, value, 'PX', expiry_ms(seconds))
  else
    redis.call('DEL', key)
  end
end

-- One rule's result, "allowed remaining retry_after reset_after too_heavy": allowed and
-- too_heavy are 0|1, retry_after "-" for none (parse_reply reads it).
local function result(allowed, remaining, retry, reset, heavy)
  return string.format('%d %d %s %.17g %d', allowed, remaining, retry, reset, heavy)
end

-- Each algorithm's file defines one function of the same shape:
--   algorithm(key, op, weight, now, a, b, c)
--     key     the rule's state for one caller
--     op      "check" (consume when allowed) | "peek" (never writes) | "refund"
--     weight  whole units; now: seconds, server time
--     a, b, c the algorithm's own arguments, as sent (see its file; unused ones empty)
--   returns allowed, remaining, retry, reset, heavy (as `result` takes them) and `write`:
--   a function that stores the new state, or nil when the state does not change. A
--   caller applies `write` only once every part of its call is allowed.
