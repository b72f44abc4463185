-- Token bucket: one atomic decision on one key (revoctl.core.limits._algorithms.TokenBucket).
-- KEYS[1]  the bucket, a hash {tokens, ts}; gone = full
-- ARGV[1]  op: "check" (consume when allowed) | "peek" (never writes) | "refund"
-- ARGV[2]  weight, whole units
-- ARGV[3]  capacity
-- ARGV[4]  refill rate, tokens per second
-- Returns  {allowed 0|1, remaining, retry_after ("" = none), reset_after, too_heavy 0|1}
-- Time is the server's (TIME); the key expires when the bucket would be full again.
local EPSILON = 1e-9
local key, op = KEYS[1], ARGV[1]
local weight, capacity, rate = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local tokens = capacity
local stored = redis.call('HMGET', key, 'tokens', 'ts')
if stored[1] then
  local last = tonumber(stored[2])
  if now < last then now = last end
  tokens = math.min(capacity, tonumber(stored[1]) + (now - last) * rate)
end

local allowed, retry, heavy, write = 1, '', 0, false
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
    redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
    redis.call('PEXPIRE', key, math.ceil(reset * 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
return {allowed, math.floor(tokens + EPSILON), retry, string.format('%.17g', reset), heavy}
