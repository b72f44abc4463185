-- Sliding window (revoctl.core.limits._algorithms.SlidingWindow); the shape: see _common.lua.
-- key      a hash {slot index -> units}; at most c + 1 fields
-- a        limit: units allowed in any window
-- b        slot length, seconds (window / slots)
-- c        slots per window
-- A check counts every slot that overlaps the last window, so no window ever holds more
-- than the limit. The key expires when every slot has left.
local function sliding_window(key, op, weight, now, a, b, c)
  local limit, slot, slots = tonumber(a), tonumber(b), tonumber(c)
  local current = math.floor(now / slot)
  local fields = redis.call('HGETALL', key)
  local newest = nil
  for i = 1, #fields, 2 do
    local index = tonumber(fields[i])
    if newest == nil or index > newest then newest = index end
  end
  if newest ~= nil and newest > current then
    current = newest
    now = math.max(now, newest * slot)
  end

  local counts, stale, used = {}, {}, 0
  for k = 0, slots do counts[k] = 0 end
  for i = 1, #fields, 2 do
    local k = current - tonumber(fields[i])
    if k > slots then
      stale[#stale + 1] = fields[i]
    else
      counts[k] = tonumber(fields[i + 1])
      used = used + counts[k]
    end
  end

  local allowed, retry, heavy, changed = 1, '-', 0, false
  if op == 'refund' then
    local left = weight
    for k = 0, slots do
      local back = math.min(left, counts[k])
      counts[k] = counts[k] - back
      left = left - back
    end
    used = used - (weight - left)
    changed = true
  elseif weight > limit then
    allowed, heavy = 0, 1
  elseif used + weight <= limit then
    if op == 'check' then
      counts[0] = counts[0] + weight
      used = used + weight
      changed = true
    end
  else
    allowed = 0
    local freed = 0
    for k = slots, 0, -1 do
      freed = freed + counts[k]
      if used - freed + weight <= limit then
        retry = string.format('%.17g', (current - k + slots + 1) * slot - now)
        break
      end
    end
  end

  local reset = 0
  for k = 0, slots do
    if counts[k] > 0 then
      reset = (current - k + slots + 1) * slot - now
      break
    end
  end
  local write = nil
  if changed and op == 'check' and #stale == 0 then
    write = function()  -- the common case: one slot grows; nothing else changes
      redis.call('HINCRBY', key, string.format('%.0f', current), weight)
      redis.call('PEXPIRE', key, expiry_ms(reset))
    end
  elseif changed then
    write = function()
      redis.call('DEL', key)
      if reset > 0 then
        local flat = {}
        for k = 0, slots do
          if counts[k] > 0 then
            flat[#flat + 1] = string.format('%.0f', current - k)
            flat[#flat + 1] = counts[k]
          end
        end
        redis.call('HSET', key, unpack(flat))
        redis.call('PEXPIRE', key, expiry_ms(reset))
      end
    end
  elseif #stale > 0 and op ~= 'peek' then
    redis.call('HDEL', key, unpack(stale))  -- slots past the window: no count changes
  end
  return allowed, limit - used, retry, reset, heavy, write
end
