-- Token bucket: one atomic decision on one key (revoctl.core.limits._algorithms.TokenBucket).
-- KEYS[1]  the bucket: a string "tokens ts" (level at the last write, and when); gone = full
-- KEYS[2], ARGV[1..3], the reply and `now`: see _decision.lua, which this follows
-- ARGV[4]  capacity
-- ARGV[5]  refill rate, tokens per second
-- Time is the server's (TIME); the key expires when the bucket would be full again.
local EPSILON = 1e-9
local capacity, rate = tonumber(ARGV[4]), tonumber(ARGV[5])

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
if write then save(reset > 0, string.format('%.17g %.17g', tokens, now), reset) end
return answer(write, allowed, math.floor(tokens + EPSILON), retry, reset, heavy)
