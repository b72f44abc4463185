-- Token bucket (revoctl.core.limits._algorithms.TokenBucket); the shape: see _common.lua.
-- key      a string "tokens ts" (level at the last write, and when); gone = full
-- a        capacity
-- b        refill rate, tokens per second
-- The key expires when the bucket would be full again.
local function token_bucket(key, op, weight, now, a, b)
  local EPSILON = 1e-9
  local capacity, rate = tonumber(a), tonumber(b)
  local tokens = capacity
  local stored = redis.call('GET', key)
  if stored then
    local level, at = string.match(stored, '^(%S+) (%S+)$')
    local last = tonumber(at)
    if now < last then now = last end
    tokens = math.min(capacity, tonumber(level) + (now - last) * rate)
  end

  local allowed, retry, heavy, changed = 1, '-', 0, false
  if op == 'refund' then
    tokens = math.min(capacity, tokens + weight)
    changed = true
  elseif weight > capacity then
    allowed, heavy = 0, 1
  elseif tokens + EPSILON >= weight then
    if op == 'check' then
      tokens = math.max(0, tokens - weight)
      changed = true
    end
  else
    allowed, retry = 0, string.format('%.17g', (weight - tokens) / rate)
  end

  local reset = 0
  if tokens < capacity - EPSILON then reset = (capacity - tokens) / rate end
  local write = nil
  if changed then
    write = function()
      save(key, reset > 0, string.format('%.17g %.17g', tokens, now), reset)
    end
  end
  return allowed, math.floor(tokens + EPSILON), retry, reset, heavy, write
end
