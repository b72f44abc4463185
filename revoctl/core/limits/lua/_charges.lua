-- What a reservation and a settlement share (after every algorithm's file): the
-- algorithms by their code, and the layout of their KEYS and first ARGV.
-- ARGV[1]  rules; ARGV[2] "1" with a budget; ARGV[3] "1" with a slot; ARGV[4] receipt ms
local ALGORITHMS = { tb = token_bucket, sw = sliding_window, fw = fixed_window }

-- The call's keys; `answered`: the reply a first copy of this call left under its receipt.
-- `reply(wrote, text)` leaves `text` under the receipt when the call wrote, and returns it.
local function charges()
  local rules, at = tonumber(ARGV[1]), tonumber(ARGV[1])
  local call = { rules = rules }
  if ARGV[2] == '1' then
    at = at + 1
    call.budget = KEYS[at]
  end
  if ARGV[3] == '1' then
    at = at + 1
    call.slots = KEYS[at]
  end
  local receipt = KEYS[at + 1]
  if receipt then call.answered = redis.call('GET', receipt) end
  call.reply = function(wrote, text)
    if wrote and receipt then redis.call('SET', receipt, text, 'PX', ARGV[4]) end
    return text
  end
  return call
end
