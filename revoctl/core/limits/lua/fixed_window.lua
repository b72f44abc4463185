-- Fixed window: one atomic decision on one key (revoctl.core.limits._algorithms.FixedWindow).
-- KEYS[1]  the window: a string "index count" (the window's index, units counted in it)
-- KEYS[2], ARGV[1..3], the reply and `now`: see _decision.lua, which this follows
-- ARGV[4]  limit: units per window
-- ARGV[5]  window length, seconds; windows are aligned to multiples of it since the epoch
-- Time is the server's (TIME); the key expires when its window ends.
local limit, window = tonumber(ARGV[4]), tonumber(ARGV[5])
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
if write then save(count > 0, string.format('%.0f %d', current, count), ends_in) end
return answer(write, allowed, limit - count, retry, reset, heavy)
