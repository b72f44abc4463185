-- One decision on one key: follows _common.lua, one algorithm's file and the line
-- `local decide = <algorithm>` (lua_source assembles them), so it is one script, one EVALSHA.
-- KEYS[1]  the key's state (its shape is the algorithm's)
-- KEYS[2]  optional, in KEYS[1]'s slot: this call's receipt. A call that changed the state
--          leaves its reply there for ARGV[3] ms, and a copy of it sent again (a client's
--          retry after the reply was lost) gets that reply instead of deciding twice
-- ARGV[1]  op: "check" (consume when allowed) | "peek" (never writes) | "refund"
-- ARGV[2]  weight, whole units
-- ARGV[3]  how long a receipt is kept, ms
-- ARGV[4..6] the algorithm's own (see its file)
-- Returns  the rule's result (`result` in _common.lua): one bulk string, the cheapest
--          reply to parse
local receipt = KEYS[2]
if receipt then
  local answered = redis.call('GET', receipt)
  if answered then return answered end
end
local allowed, remaining, retry, reset, heavy, write =
  decide(KEYS[1], ARGV[1], tonumber(ARGV[2]), server_now(), ARGV[4], ARGV[5], ARGV[6])
local reply = result(allowed, remaining, retry, reset, heavy)
if write then
  write()
  if receipt then redis.call('SET', receipt, reply, 'PX', ARGV[3]) end
end
return reply
