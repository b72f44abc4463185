-- Renew leases of one account's slot set (revoctl.core.limits.reservations.HeldLease).
-- Follows _common.lua (renewal_source assembles them).
-- KEYS[1]  the account's slot set: lease id -> when it runs out, server ms
-- ARGV[1]  lease ms; ARGV[2..] the lease ids to extend to now + ARGV[1]
-- Leases that ran out are dropped first, and a lease no longer in the set (run out,
-- released) is not added again (ZADD XX).
-- Returns  how many leases were renewed
local now_ms = math.floor(server_now() * 1000)
local lease_ms = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local flat = {}
for i = 2, #ARGV do
  flat[#flat + 1] = now_ms + lease_ms
  flat[#flat + 1] = ARGV[i]
end
local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', unpack(flat))
if renewed > 0 then redis.call('PEXPIRE', KEYS[1], lease_ms + 1000) end
return renewed
