-- Fixed window: one atomic decision on one key (revoctl.core.limits._algorithms.FixedWindow).
-- KEYS[1]  the window: a string "index count" (the window's index, units counted in it)
-- KEYS[2]  optional, in KEYS[1]'s slot: this call's receipt. A call that changed the state
--          leaves its reply there for ARGV[3] ms, and a copy of it sent again (a client's
--          retry after the reply was lost) gets that reply instead of deciding twice
-- ARGV[1]  op: "check" (consume when allowed) | "peek" (never writes) | "refund"
-- ARGV[2]  weight, whole units
-- ARGV[3]  how long a receipt is kept, ms
-- ARGV[4]  limit: units per window
-- ARGV[5]  window length, seconds; windows are aligned to multiples of it since the epoch
-- Returns  "allowed remaining retry_after reset_after too_heavy": one bulk string, the
--          cheapest reply to parse; allowed and too_heavy are 0|1, retry_after "-" for none
-- Time is the server's (TIME); the key expires when its window ends.
local key, op = KEYS[1], ARGV[1]
local weight, limit, window = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local receipt = KEYS[2]
if receipt then
  local answered = redis.call('GET', receipt)
  if answered then return answered end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local current = math.floor(now / window)

local count = 0
local stored = redis.call('GET', key)
if stored then
  local at, counted = string.match(stored, '^(%S+) (%S+)$')
  local index = tonumber(at)
  if index > current then
    current = index
    now = math.max(now, index * window)
  end
  if index == current then count = tonumber(counted) end
end

local allowed, retry, heavy, write = 1, '-', 0, false
local ends_in = (current + 1) * window - now
if op == 'refund' then
  count = math.max(0, count - weight)
  write = true
elseif weight > limit then
  allowed, heavy = 0, 1
elseif count + weight <= limit then
  if op == 'check' then
    count = count + weight
    write = true
  end
else
  allowed, retry = 0, string.format('%.17g', ends_in)
end

local reset = 0
if count > 0 then reset = ends_in end
if write then
  if count > 0 then
    redis.call('SET', key, string.format('%.0f %d', current, count),
      'PX', math.ceil(ends_in * 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
local reply = string.format('%d %d %s %.17g %d', allowed, limit - count, retry, reset, heavy)
if write and receipt then redis.call('SET', receipt, reply, 'PX', ARGV[3]) end
return reply
