"""The operator state of an HA deployment, in Redis under its namespace.

One hash, ``<ns>:operator`` (``version`` = ``id:revision``, ``doc`` = the JSON document of
``grinder.operator.state``), and one sorted set, ``<ns>:operator:writes``: the writes on
their way, one member per instance, scored by when its mark expires (Redis's clock).
Each step is one Lua script, so it is atomic with every other:

* ``mark_write`` -- right before an exchange request is signed (at the wire, after the
  fenced budget reservation): marks this instance's write on its way and returns the
  document if its version changed. A command that records a word after this step
  finds the mark and waits for it; one recorded before it is in the document returned.
* ``replace`` -- compare-and-set of the document on its version.
* ``writes_in_flight`` -- the marks not yet expired (what a command waits on).

Any Redis failure is an ``OperatorStateError``: the caller fails closed.
"""

from __future__ import annotations

import contextlib
from typing import Any

from grinder.ha.connection import RedisConnection, RedisUnavailable
from grinder.operator.state import OperatorState, OperatorStateError
from grinder.operator.stores import UNCHANGED, Read, Unchanged, dump_document, parse_document

NOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

READ_TAIL_LUA = """
local v = redis.call('HGET', KEYS[1], 'version') or ''
if v == ARGV[1] then return {0, v} end
if v == '' then return {1, v, ''} end
return {1, v, redis.call('HGET', KEYS[1], 'doc') or ''}
"""

READ_LUA = "-- KEYS: doc hash; ARGV: known version\n" + READ_TAIL_LUA

MARK_LUA = (
    "-- KEYS: doc hash, writes; ARGV: known version, holder, window ms\n"
    + NOW_LUA
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
"""
    + READ_TAIL_LUA
)

IN_FLIGHT_LUA = (
    "-- KEYS: writes\n"
    + NOW_LUA
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)

REPLACE_LUA = """
-- KEYS: doc hash; ARGV: expected version, new version, doc
local v = redis.call('HGET', KEYS[1], 'version') or ''
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'doc', ARGV[3])
return 1
"""


class RedisOperatorStore:
    """``grinder.operator.stores.OperatorStore`` in Redis (see the module doc)."""

    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn
        self.key = conn.key("operator")
        self.writes_key = conn.key("operator", "writes")
        self._read = conn.script(READ_LUA)
        self._mark = conn.script(MARK_LUA)
        self._in_flight = conn.script(IN_FLIGHT_LUA)
        self._replace = conn.script(REPLACE_LUA)

    @property
    def where(self) -> str:
        return f"{self.conn.display_url} key {self.key}"

    def read(self) -> OperatorState | None:
        got = self.read_if_changed("\x00")  # no version is that: always the document
        if isinstance(got, Unchanged):
            raise AssertionError("a read against no version is never unchanged")
        return got

    def read_if_changed(self, version: str) -> Read:
        return self._reply(self._eval("operator_read", self._read, [self.key], [version]))

    def mark_write(self, holder: str, window_ms: int, version: str) -> Read:
        reply = self._eval(
            "operator_mark", self._mark, [self.key, self.writes_key], [version, holder, window_ms]
        )
        return self._reply(reply)

    def unmark_write(self, holder: str) -> None:
        with contextlib.suppress(RedisUnavailable):  # else the mark expires with its window
            self.conn.run("operator_unmark", lambda c: c.zrem(self.writes_key, holder))

    def writes_in_flight(self) -> int:
        return int(self._eval("operator_in_flight", self._in_flight, [self.writes_key], []))

    def replace(self, expected: str, new: OperatorState) -> bool:
        args = [expected, new.version, dump_document(new)]
        return int(self._eval("operator_replace", self._replace, [self.key], args)) == 1

    def _eval(self, op: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return self.conn.eval(op, script, keys, args)
        except RedisUnavailable as exc:
            raise OperatorStateError(f"{self.where}: cannot be read ({exc})") from None

    def _reply(self, reply: Any) -> Read:
        if int(reply[0]) == 0:
            return UNCHANGED
        if not reply[1]:
            return None
        return parse_document(str(reply[2]), self.where)
