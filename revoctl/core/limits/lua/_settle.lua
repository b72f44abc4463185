-- A settlement (revoctl.core.limits.reservations): refunds on rules, the budget's
-- correction and the slot's release of one hash tag, in one EVALSHA. Follows _common.lua,
-- every algorithm's file and _charges.lua (settlement_source assembles them).
-- KEYS     each refunded rule's state (ARGV[1] of them), then the budget's counter when
--          ARGV[2] is "1", the account's slot set when ARGV[3] is "1", then optionally
--          this call's receipt (see _decision.lua; kept ARGV[4] ms)
-- ARGV[5..] five per rule: algorithm ("tb" | "sw" | "fw"), units given back, the
--          algorithm's three arguments; then for the budget: delta (nano-units), keep ms;
--          then for the slot: the lease id
-- The counter never goes below 0 (a counter that ran out is not made again by a
-- negative delta).
-- Returns  each refunded rule's result after the refund, joined by ","
local call = charges()
if call.answered then return call.answered end
local now = server_now()
local parts = {}
for i = 1, call.rules do
  local at = 5 * i
  local allowed, remaining, retry, reset, heavy, write = ALGORITHMS[ARGV[at]](
    KEYS[i], 'refund', tonumber(ARGV[at + 1]), now, ARGV[at + 2], ARGV[at + 3], ARGV[at + 4])
  write()
  parts[i] = result(allowed, remaining, retry, reset, heavy)
end
local at = 5 * (call.rules + 1)
if call.budget then
  local stored = redis.call('GET', call.budget)
  local delta = tonumber(ARGV[at])
  if stored or delta > 0 then
    local spent = math.max(0, tonumber(stored or '0') + delta)
    redis.call('SET', call.budget, string.format('%.0f', spent), 'PX', ARGV[at + 1])
  end
  at = at + 2
end
if call.slots then redis.call('ZREM', call.slots, ARGV[at]) end
return call.reply(true, table.concat(parts, ','))
