-- Token bucket: one atomic decision on one key (revoctl.core.limits._algorithms.TokenBucket).
-- KEYS[1]  the bucket: a string "tokens ts" (level at the last write, and when); gone = full
-- KEYS[2]  optional, in KEYS[1]'s slot: this call's receipt. A call that changed the state
--          leaves its reply there for ARGV[3] ms, and a copy of it sent again (a client's
--          retry after the reply was lost) gets that reply instead of deciding twice
-- ARGV[1]  op: "check" (consume when allowed) | "peek" (never writes) | "refund"
-- ARGV[2]  weight, whole units
-- ARGV[3]  how long a receipt is kept, ms
-- ARGV[4]  capacity
-- ARGV[5]  refill rate, tokens per second
-- Returns  "allowed remaining retry_after reset_after too_heavy": one bulk string, the
--          cheapest reply to parse; allowed and too_heavy are 0|1, retry_after "-" for none
-- Time is the server's (TIME); the key expires when the bucket would be full again.
local EPSILON = 1e-9
local key, op = KEYS[1], ARGV[1]
local weight, capacity, rate = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local receipt = KEYS[2]
if receipt then
  local answered = redis.call('GET', receipt)
  if answered then return answered end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local tokens = capacity
local stored = redis.call('GET', key)
if stored then
  local level, at = string.match(stored, '^(%S+) (%S+)$')
  local last = tonumber(at)
  if now < last then now = last end
  tokens = math.min(capacity, tonumber(level) + (now - last) * rate)
end

local allowed, retry, heavy, write = 1, '-', 0, false
if op == 'refund' then
  tokens = math.min(capacity, tokens + weight)
  write = true
elseif weight > capacity then
  allowed, heavy = 0, 1
elseif tokens + EPSILON >= weight then
  if op == 'check' then
    tokens = math.max(0, tokens - weight)
    write = true
  end
else
  allowed, retry = 0, string.format('%.17g', (weight - tokens) / rate)
end

local reset = 0
if tokens < capacity - EPSILON then reset = (capacity - tokens) / rate end
if write then
  if reset > 0 then
    redis.call('SET', key, string.format('%.17g %.17g', tokens, now),
      'PX', math.ceil(reset * 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
local reply = string.format('%d %d %s %.17g %d',
  allowed, math.floor(tokens + EPSILON), retry, reset, heavy)
if write and receipt then redis.call('SET', receipt, reply, 'PX', ARGV[3]) end
return reply
