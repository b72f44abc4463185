-- The start of every decision script: prepended to <algorithm>.lua when it is loaded, so
-- each decision is still one script, one EVALSHA.
-- KEYS[1]  the key's state (its shape is the algorithm's)
-- KEYS[2]  optional, in KEYS[1]'s slot: this call's receipt. A call that changed the state
--          leaves its reply there for ARGV[3] ms, and a copy of it sent again (a client's
--          retry after the reply was lost) gets that reply instead of deciding twice
-- ARGV[1]  op: "check" (consume when allowed) | "peek" (never writes) | "refund"
-- ARGV[2]  weight, whole units
-- ARGV[3]  how long a receipt is kept, ms
-- ARGV[4..] the algorithm's own (see its file)
-- Returns  "allowed remaining retry_after reset_after too_heavy": one bulk string, the
--          cheapest reply to parse; allowed and too_heavy are 0|1, retry_after "-" for none
-- Time is the server's (TIME): `now`, in seconds.
local key, op, weight = KEYS[1], ARGV[1], tonumber(ARGV[2])
local receipt = KEYS[2]
if receipt then
  local answered = redis.call('GET', receipt)
  if answered then return answered end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

-- The key's expiry, in ms, for state that runs out in `seconds`: a second to spare.
local function expiry_ms(seconds)
  return math.ceil(seconds * 1000) + 1000
end

-- Keep `value` in the key until it runs out in `seconds`, or delete the key when not `keep`.
local function save(keep, value, seconds)
  if keep then
    redis.call('SET', key, value, 'PX', expiry_ms(seconds))
  else
    redis.call('DEL', key)
  end
end

-- The reply; a call that changed the state (`write`) leaves it under its receipt.
local function answer(write, allowed, remaining, retry, reset, heavy)
  local reply = string.format('%d %d %s %.17g %d', allowed, remaining, retry, reset, heavy)
  if write and receipt then redis.call('SET', receipt, reply, 'PX', ARGV[3]) end
  return reply
end

