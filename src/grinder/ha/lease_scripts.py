"""The lease's Lua scripts: acquire (with the fencing counter and the epoch wait after a
data loss), renew, release. Each runs as one atomic step in Redis; ``ha/elector.py``
calls them."""

from __future__ import annotations

from grinder.ha.connection import ENSURE_EPOCH_LUA

ACQUIRE_LUA = (
    ENSURE_EPOCH_LUA
    + """
-- KEYS: lease, fencing counter, epoch
-- ARGV: instance id, lease ms, token floor, nonce, epoch suffix
local epoch = ensure_epoch(KEYS[3], ARGV[5])
-- Every attempt raises the counter to the largest token this instance has seen, also
-- during the epoch wait: after a data loss every live instance campaigns in that wait,
-- so the first new token is above every token any of them knows.
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
if epoch_age_ms(epoch) < tonumber(ARGV[2]) then
  -- A new epoch: Redis lost its data (or this is the first start). A leader elected
  -- before the loss may believe it leads until its local deadline, at most one lease
  -- from now: nobody acquires before that.
  return {0, '', epoch}
end
local holder = redis.call('GET', KEYS[1])
if holder then
  local tail = ' ' .. ARGV[4]
  if string.sub(holder, -string.len(tail)) == tail then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, holder, epoch}
  end
  return {0, holder, epoch}
end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ' ' .. string.format('%d', token) .. ' ' .. ARGV[4]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return {1, value, epoch}
"""
)

RENEW_LUA = """
-- KEYS: lease, epoch; ARGV: value, lease ms
local epoch = redis.call('GET', KEYS[2]) or ''
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, epoch}
end
return {0, epoch}
"""

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
