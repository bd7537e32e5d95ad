"""The shared budget's two Lua scripts, each one atomic step in Redis.

``RESERVE_LUA`` reserves one call: the lease still this leadership's with the safety
margin left (fencing), Redis past its recovery window, the day's limits -- and only then
the day's usage incremented and the cooldown anchor raised. ``MERGE_LUA`` pushes an
instance's knowledge back after Redis lost its data (raise-to-at-least; knowledge older
than an operator's reset is ignored). ``grinder.budget.redis_store`` runs them.
"""

from __future__ import annotations

from grinder.ha.connection import ENSURE_EPOCH_LUA

RESERVE_LUA = (
    ENSURE_EPOCH_LUA
    + """
-- KEYS: lease, budget day hash, last write ms, epoch
-- ARGV: 1 lease value, 2 min lease pttl ms, 3 units, 4 max calls, 5 max units,
--       6 floor calls, 7 floor units, 8 floor ts, 9 now ms, 10 day key ttl s,
--       11 recovery ms, 12 epoch suffix
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return {'fenced', holder or ''} end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < tonumber(ARGV[2]) then return {'lease_expiring', tostring(pttl)} end
local epoch = ensure_epoch(KEYS[4], ARGV[12])
local age = epoch_age_ms(epoch)
if age < tonumber(ARGV[11]) then return {'recovering', tostring(age)} end
local h = redis.call('HMGET', KEYS[2], 'calls', 'units', 'updated_ts', 'reset_ts')
local calls = tonumber(h[1] or '0')
local units = tonumber(h[2] or '0')
local updated = tonumber(h[3] or '0')
local reset_ts = tonumber(h[4] or '0')
if tonumber(ARGV[8]) > reset_ts then
  if tonumber(ARGV[6]) > calls then calls = tonumber(ARGV[6]) end
  if tonumber(ARGV[7]) > units then units = tonumber(ARGV[7]) end
end
local function state(kind, ts)
  return {kind, string.format('%d', calls), string.format('%.0f', units), string.format('%d', ts)}
end
if calls + 1 > tonumber(ARGV[4]) then return state('max_calls_per_day', updated) end
if units + tonumber(ARGV[3]) > tonumber(ARGV[5]) then
  return state('max_notional_per_day', updated)
end
calls = calls + 1
units = units + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], 'calls', string.format('%d', calls),
  'units', string.format('%.0f', units), 'updated_ts', ARGV[9])
redis.call('EXPIRE', KEYS[2], ARGV[10])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[9]) > last then redis.call('SET', KEYS[3], ARGV[9]) end
return state('ok', tonumber(ARGV[9]))
"""
)

MERGE_LUA = """
-- KEYS: budget day hash, last write ms
-- ARGV: 1 calls, 2 units, 3 state ts, 4 last write ms, 5 day key ttl s
if tonumber(ARGV[1]) > 0 or tonumber(ARGV[2]) > 0 then
  local h = redis.call('HMGET', KEYS[1], 'calls', 'units', 'updated_ts', 'reset_ts')
  local reset_ts = tonumber(h[4] or '0')
  if tonumber(ARGV[3]) > reset_ts then
    local calls = tonumber(h[1] or '0')
    local units = tonumber(h[2] or '0')
    local updated = tonumber(h[3] or '0')
    if tonumber(ARGV[1]) > calls then calls = tonumber(ARGV[1]) end
    if tonumber(ARGV[2]) > units then units = tonumber(ARGV[2]) end
    if tonumber(ARGV[3]) > updated then updated = tonumber(ARGV[3]) end
    redis.call('HSET', KEYS[1], 'calls', string.format('%d', calls),
      'units', string.format('%.0f', units), 'updated_ts', string.format('%d', updated))
    redis.call('EXPIRE', KEYS[1], ARGV[5])
  end
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[4]) > last then redis.call('SET', KEYS[2], ARGV[4]) end
return 1
"""
