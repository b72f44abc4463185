-- Fixed window: one atomic decision on one key (revoctl.core.limits._algorithms.FixedWindow).
-- KEYS[1]  the window, a hash {w = window index, c = units counted in it}
-- ARGV[1]  op: "check" (consume when allowed) | "peek" (never writes) | "refund"
-- ARGV[2]  weight, whole units
-- ARGV[3]  limit: units per window
-- ARGV[4]  window length, seconds; windows are aligned to multiples of it since the epoch
-- Returns  {allowed 0|1, remaining, retry_after ("" = none), reset_after, too_heavy 0|1}
-- Time is the server's (TIME); the key expires when its window ends.
local key, op = KEYS[1], ARGV[1]
local weight, limit, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local current = math.floor(now / window)

local count = 0
local stored = redis.call('HMGET', key, 'w', 'c')
if stored[1] then
  local index = tonumber(stored[1])
  if index > current then
    current = index
    now = math.max(now, index * window)
  end
  if index == current then count = tonumber(stored[2]) end
end

local allowed, retry, heavy, write = 1, '', 0, false
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
    redis.call('HSET', key, 'w', string.format('%.0f', current), 'c', count)
    redis.call('PEXPIRE', key, math.ceil(ends_in * 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end
return {allowed, limit - count, retry, string.format('%.17g', reset), heavy}
