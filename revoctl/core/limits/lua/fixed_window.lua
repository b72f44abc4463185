-- Fixed window (revoctl.core.limits._algorithms.FixedWindow); the shape: see _common.lua.
-- key      a string "index count" (the window's index, units counted in it)
-- a        limit: units per window
-- b        window length, seconds; windows are aligned to multiples of it since the epoch
-- The key expires when its window ends.
local function fixed_window(key, op, weight, now, a, b)
  local limit, window = tonumber(a), tonumber(b)
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

  local allowed, retry, heavy, changed = 1, '-', 0, false
  local ends_in = (current + 1) * window - now
  if op == 'refund' then
    count = math.max(0, count - weight)
    changed = true
  elseif weight > limit then
    allowed, heavy = 0, 1
  elseif count + weight <= limit then
    if op == 'check' then
      count = count + weight
      changed = true
    end
  else
    allowed, retry = 0, string.format('%.17g', ends_in)
  end

  local reset = 0
  if count > 0 then reset = ends_in end
  local write = nil
  if changed then
    write = function()
      save(key, count > 0, string.format('%.0f %d', current, count), ends_in)
    end
  end
  return allowed, limit - count, retry, reset, heavy, write
end
