-- A reservation (revoctl.core.limits.reservations): every rule, the budget and the slot of
-- one hash tag, all or nothing, in one EVALSHA. Follows _common.lua, every algorithm's file
-- and _charges.lua (reservation_source assembles them).
-- KEYS     each rule's state (ARGV[1] of them), then the budget's counter when ARGV[2] is
--          "1", the account's slot set when ARGV[3] is "1", then optionally this call's
--          receipt (see _decision.lua; kept ARGV[4] ms)
-- ARGV[5..] five per rule: algorithm ("tb" | "sw" | "fw"), weight, the algorithm's three
--          arguments (see its file; unused ones empty); then for the budget: limit,
--          amount (nano-units), keep ms; then for the slot: cap, lease id, lease ms
-- Every part is evaluated first; only when all allow is anything written: the rules'
-- states, INCRBY of the counter, the lease in the set (score: when it runs out, server
-- ms). The slot set first drops the leases that ran out.
-- Returns  one bulk string of parts joined by ",": each rule's result (`result`: after
--          the charge, or as found when the whole was denied), then "allowed spent" for
--          the budget and "allowed in_flight" for the slot (after the charge, or as found)
local call = charges()
if call.answered then return call.answered end
local now = server_now()

-- Rule i's decision under `op` (its arguments: see the header).
local function rule(i, op)
  local at = 5 * i
  return ALGORITHMS[ARGV[at]](
    KEYS[i], op, tonumber(ARGV[at + 1]), now, ARGV[at + 2], ARGV[at + 3], ARGV[at + 4])
end

local whole, parts, writes = true, {}, {}
for i = 1, call.rules do
  local allowed, remaining, retry, reset, heavy, write = rule(i, 'check')
  parts[i], writes[i] = result(allowed, remaining, retry, reset, heavy), write
  if allowed == 0 then whole = false end
end

local at = 5 * (call.rules + 1)
local spent, amount, budget_ok
if call.budget then
  spent = tonumber(redis.call('GET', call.budget) or '0')
  amount = tonumber(ARGV[at + 1])
  budget_ok = spent + amount <= tonumber(ARGV[at])
  whole = whole and budget_ok
  at = at + 3
end
local now_ms, held, slot_ok = math.floor(now * 1000), 0, true
if call.slots then
  redis.call('ZREMRANGEBYSCORE', call.slots, '-inf', now_ms)
  held = redis.call('ZCARD', call.slots)
  slot_ok = held < tonumber(ARGV[at])
  whole = whole and slot_ok
end

if whole then
  for i = 1, call.rules do
    if writes[i] then writes[i]() end
  end
  if call.budget then
    spent = redis.call('INCRBY', call.budget, ARGV[at - 2])
    redis.call('PEXPIRE', call.budget, ARGV[at - 1])
  end
  if call.slots then
    redis.call('ZADD', call.slots, now_ms + tonumber(ARGV[at + 2]), ARGV[at + 1])
    redis.call('PEXPIRE', call.slots, tonumber(ARGV[at + 2]) + 1000)
    held = held + 1
  end
else
  for i = 1, call.rules do
    if writes[i] then  -- allowed, but nothing was taken: its numbers as found
      parts[i] = result(rule(i, 'peek'))
    end
  end
end
if call.budget then
  parts[#parts + 1] = string.format('%d %.0f', budget_ok and 1 or 0, spent)
end
if call.slots then parts[#parts + 1] = string.format('%d %d', slot_ok and 1 or 0, held) end
return call.reply(whole, table.concat(parts, ','))
