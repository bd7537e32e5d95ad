"""Where the Redis expected-state store keeps its data, and the scripts that change it.

The keys of one deployment (``RedisKeys``, under ``<ns>:expected:*`` plus the
deployment's ``<ns>:epoch``; what each holds is described in
``grinder.state.redis_store``) and the Lua scripts of every write. Each script
gets all the keys, in ``RedisKeys.all()`` order, and runs atomically: a write
happens whole or not at all, and stamps what it changed with the next value of
the change sequence that readers follow.
"""

from __future__ import annotations

from dataclasses import dataclass

from grinder.ha.connection import ENSURE_EPOCH_LUA, RedisConnection


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The expected-state keys of one deployment (one namespace)."""

    orders: str
    positions: str
    changes: str
    ended: str
    tombstones: str
    seq: str
    floor: str
    epoch: str
    heartbeat: str

    @classmethod
    def of(cls, conn: RedisConnection) -> RedisKeys:
        """The keys in ``conn``'s namespace."""
        k = conn.key
        return cls(
            orders=k("expected", "orders"),
            positions=k("expected", "positions"),
            changes=k("expected", "changes"),
            ended=k("expected", "ended"),
            tombstones=k("expected", "tombstones"),
            seq=k("expected", "seq"),
            floor=k("expected", "floor"),
            epoch=k("epoch"),
            heartbeat=k("expected", "heartbeat"),
        )

    def all(self) -> list[str]:
        """Every key, in the order the scripts expect them (``KEYS[1]`` .. ``KEYS[9]``)."""
        return [
            self.orders,
            self.positions,
            self.changes,
            self.ended,
            self.tombstones,
            self.seq,
            self.floor,
            self.epoch,
            self.heartbeat,
        ]


_COMMON_LUA = (
    ENSURE_EPOCH_LUA
    + """
-- KEYS: 1 orders, 2 positions, 3 changes, 4 ended, 5 tombstones, 6 seq, 7 floor, 8 epoch,
--       9 heartbeat
-- The last ARGV of every script is '1' when a bot writes: the call stamps the bot heartbeat
-- with the server's time (ms), whatever its outcome.
local function beat()
  if ARGV[#ARGV] == '1' then
    local t = redis.call('TIME')
    redis.call('SET', KEYS[9],
      string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
  end
end
local function touch(member)
  local s = redis.call('INCR', KEYS[6])
  redis.call('ZADD', KEYS[3], s, member)
  return s
end
local function drop(cid)
  if redis.call('HDEL', KEYS[1], cid) == 0 then return 0 end
  redis.call('ZREM', KEYS[4], cid)
  local s = touch('o:' .. cid)
  redis.call('ZADD', KEYS[5], s, cid)
  return 1
end
local function purge(retention)
  local excess = redis.call('ZCARD', KEYS[5]) - retention
  if excess <= 0 then return end
  local old = redis.call('ZRANGE', KEYS[5], 0, excess - 1, 'WITHSCORES')
  local floor = tonumber(redis.call('GET', KEYS[7]) or '0')
  for i = 1, #old, 2 do
    redis.call('ZREM', KEYS[3], 'o:' .. old[i])
    redis.call('ZREM', KEYS[5], old[i])
    if tonumber(old[i + 1]) > floor then floor = tonumber(old[i + 1]) end
  end
  redis.call('SET', KEYS[7], string.format('%d', floor))
end
"""
)

RECORD_LUA = (
    _COMMON_LUA
    + """
-- ARGV: 1 cid, 2 json, 3 ended ts or '', 4 max orders, 5 epoch suffix, 6 retention, last: bot
ensure_epoch(KEYS[8], ARGV[5])
beat()
local evicted = ''
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0)
    if oldest[1] and drop(oldest[1]) == 1 then evicted = oldest[1] end
    if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
      return {'full', redis.call('HLEN', KEYS[1])}
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[4], ARGV[1])
end
redis.call('ZREM', KEYS[5], ARGV[1])
purge(tonumber(ARGV[6]))
-- the order evicted to make room ('' for none), for the writer's mirror
return {'ok', touch('o:' .. ARGV[1]), evicted}
"""
)

UPDATE_LUA = (
    _COMMON_LUA
    + """
-- ARGV: 1 cid, 2 expected current json, 3 new json, 4 ended ts or '', 5 epoch suffix, last: bot
ensure_epoch(KEYS[8], ARGV[5])
beat()
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return {'unknown', 0} end
if current ~= ARGV[2] then return {'retry', 0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1]) end
return {'ok', touch('o:' .. ARGV[1])}
"""
)

REMOVE_LUA = (
    _COMMON_LUA
    + """
-- ARGV: 1 cid, 2 epoch suffix, 3 retention, last: bot
ensure_epoch(KEYS[8], ARGV[2])
beat()
local n = drop(ARGV[1])
purge(tonumber(ARGV[3]))
return n
"""
)

EVICT_LUA = (
    _COMMON_LUA
    + """
-- ARGV: 1 cutoff (ended at or before), 2 epoch suffix, 3 retention, 4 batch, last: bot
ensure_epoch(KEYS[8], ARGV[2])
beat()
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local n = 0
for _, cid in ipairs(ids) do n = n + drop(cid) end
purge(tonumber(ARGV[3]))
return n
"""
)

POSITION_LUA = (
    _COMMON_LUA
    + """
-- ARGV: 1 position key, 2 json, 3 epoch suffix, last: bot
ensure_epoch(KEYS[8], ARGV[3])
beat()
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return touch('p:' .. ARGV[1])
"""
)

HEARTBEAT_LUA = (
    _COMMON_LUA
    + """
-- ARGV: 1 epoch suffix, 2 bot ('1')
ensure_epoch(KEYS[8], ARGV[1])
beat()
return redis.call('GET', KEYS[9])
"""
)
