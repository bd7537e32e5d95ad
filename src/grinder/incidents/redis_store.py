"""The ledger in Redis (HA): the deployment's namespace, so a new leader continues the old one's.

Keys under ``<ns>:incidents:``:

* ``records`` -- hash, id → the record's JSON (``records.record_to_json``);
* ``summaries`` -- hash, id → what ``list`` shows, as a JSON array (small and quick to
  read: listing never decodes records, and 10,000 arrays decode in a fraction of the time
  10,000 objects take);
* ``acks`` -- hash, id → the acknowledgement (never written by ``put``);
* ``open`` -- hash, incident key → the id of its open incident (one per key).

Every write is one Lua script (atomic). ``open_or_adopt`` stores a new incident only
when no incident is open for its key, else returns that one: two instances racing
(a failover) end with one incident. Errors are ``RedisUnavailable`` (the connection's
one error type); a value that cannot be read is ``LedgerCorrupt``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from grinder.ha.connection import RedisConnection
from grinder.incidents.ledger import Retention, RetentionEntry, to_drop
from grinder.incidents.record_json import (
    SUMMARY_KEYS,
    ack_from_json,
    ack_to_json,
    record_from_json,
    record_to_json,
    summary_from_values,
)
from grinder.incidents.records import (
    Ack,
    IncidentRecord,
    IncidentSummary,
    LedgerCorrupt,
)
from grinder.incidents.store import keep, key_text, newest_first, unknown

# KEYS: records, summaries, open. ARGV: id, record, summary, key, is_open ("1"/"0"), adopt.
_PUT_LUA = """
local existing = redis.call('HGET', KEYS[3], ARGV[4])
if ARGV[6] == '1' and existing and existing ~= ARGV[1] then
  return existing
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[5] == '1' then
  if not existing then redis.call('HSET', KEYS[3], ARGV[4], ARGV[1]) end
elseif existing == ARGV[1] then
  redis.call('HDEL', KEYS[3], ARGV[4])
end
return ARGV[1]
"""

# KEYS: records, acks. ARGV: id, ack.
_ACK_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: records, summaries, acks. ARGV: ids to remove.
_DROP_LUA = """
for i = 1, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
end
return #ARGV
"""

# KEYS: summaries. Every summary in one JSON array of arrays: one reply, one decode.
_LIST_LUA = """
local values = redis.call('HVALS', KEYS[1])
return '[' .. table.concat(values, ',') .. ']'
"""

DROP_CHUNK = 500


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class RedisIncidentStore:
    kind = "redis"

    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn
        k = conn.key
        self.records_key = k("incidents", "records")
        self.summaries_key = k("incidents", "summaries")
        self.acks_key = k("incidents", "acks")
        self.open_key = k("incidents", "open")
        self.where = f"incident ledger in Redis {conn.display_url} ({k('incidents', '*')})"
        self._put = conn.script(_PUT_LUA)
        self._ack = conn.script(_ACK_LUA)
        self._drop = conn.script(_DROP_LUA)
        self._list = conn.script(_LIST_LUA)

    def _decode(self, text: Any, what: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise LedgerCorrupt(f"{self.where}: {what} is not JSON") from None

    # --- writes --------------------------------------------------------------------------------

    @staticmethod
    def _args(rec: IncidentRecord, *, adopt: bool) -> list[str]:
        return [
            rec.id,
            _dumps(record_to_json(rec)),
            _dumps(list(replace(rec, ack=None).summary())[: len(SUMMARY_KEYS)]),
            key_text(rec.key),
            "1" if rec.is_open else "0",
            "1" if adopt else "0",
        ]

    def _write(self, rec: IncidentRecord, *, adopt: bool) -> str:
        keys = [self.records_key, self.summaries_key, self.open_key]
        args = self._args(rec, adopt=adopt)
        return str(self.conn.eval("incidents put", self._put, keys, args))

    def open_or_adopt(self, rec: IncidentRecord) -> IncidentRecord:
        stored = self._write(rec, adopt=True)
        if stored == rec.id:
            return rec
        found = self.get(stored)
        if found is None:
            raise LedgerCorrupt(f"{self.where}: the open incident {stored} has no record")
        return found

    def put(self, rec: IncidentRecord) -> None:
        self._write(rec, adopt=False)

    def put_many(self, records: Iterable[IncidentRecord]) -> None:
        """One round trip: the scripts in a pipeline (each atomic, as ``put``)."""
        keys = [self.records_key, self.summaries_key, self.open_key]

        def send(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for rec in records:
                self._put(keys=keys, args=self._args(rec, adopt=False), client=pipe)
            return pipe.execute()

        self.conn.run("incidents put", send)

    def acknowledge(self, incident_id: str, ack: Ack) -> IncidentRecord:
        keys = [self.records_key, self.acks_key]
        done = self.conn.eval(
            "incidents ack", self._ack, keys, [incident_id, _dumps(ack_to_json(ack))]
        )
        if not done:
            raise unknown(incident_id, self.where)
        found = self.get(incident_id)
        assert found is not None
        return found

    def prune(self, now_ms: int, retention: Retention) -> int:
        summaries = self._all_summaries()
        entries = (RetentionEntry(s.id, s.first_seen_ms, s.cleared_ms) for s in summaries)
        drop = to_drop(entries, now_ms, retention)
        keys = [self.records_key, self.summaries_key, self.acks_key]
        for start in range(0, len(drop), DROP_CHUNK):
            self.conn.eval("incidents prune", self._drop, keys, drop[start : start + DROP_CHUNK])
        return len(drop)

    # --- reads ---------------------------------------------------------------------------------

    def get(self, incident_id: str) -> IncidentRecord | None:
        text, ack_text = self.conn.run(
            "incidents get",
            lambda c: (
                c.pipeline(transaction=False)
                .hget(self.records_key, incident_id)
                .hget(self.acks_key, incident_id)
                .execute()
            ),
        )
        if text is None:
            return None
        return self._record(text, ack_text)

    def _record(self, text: Any, ack_text: Any) -> IncidentRecord:
        ack = None
        if ack_text is not None:
            ack = ack_from_json(self._decode(ack_text, "an acknowledgement"), self.where)
        return record_from_json(self._decode(text, "a record"), self.where, ack)

    def open_incidents(self) -> list[IncidentRecord]:
        ids = [str(i) for i in self.conn.run("incidents open", lambda c: c.hvals(self.open_key))]
        if not ids:
            return []
        texts, acks = self.conn.run(
            "incidents open records",
            lambda c: (
                c.pipeline(transaction=False)
                .hmget(self.records_key, ids)
                .hmget(self.acks_key, ids)
                .execute()
            ),
        )
        return [self._record(t, a) for t, a in zip(texts, acks, strict=True) if t is not None]

    def _all_summaries(self) -> list[IncidentSummary]:
        text = self.conn.eval("incidents list", self._list, [self.summaries_key], [])
        acks = self.conn.run("incidents list acks", lambda c: c.hgetall(self.acks_key))
        rows = self._decode(text, "the summaries")
        if not isinstance(rows, list):
            raise LedgerCorrupt(f"{self.where}: the summaries are not a list")
        decoded = {
            rid: ack_from_json(self._decode(t, "an acknowledgement"), self.where)
            for rid, t in acks.items()
        }
        out = []
        for row in rows:
            rid = row[0] if isinstance(row, list) and row else None
            ack = decoded.get(rid) if isinstance(rid, str) else None
            out.append(summary_from_values(row, self.where, ack))
        return out

    def _open_summaries(self) -> list[IncidentSummary]:
        ids = [str(i) for i in self.conn.run("incidents open", lambda c: c.hvals(self.open_key))]
        if not ids:
            return []
        texts, acks = self.conn.run(
            "incidents open summaries",
            lambda c: (
                c.pipeline(transaction=False)
                .hmget(self.summaries_key, ids)
                .hmget(self.acks_key, ids)
                .execute()
            ),
        )
        out = []
        for rid, text, ack_text in zip(ids, texts, acks, strict=True):
            if text is None:
                continue
            ack = None
            if ack_text is not None:
                ack = ack_from_json(self._decode(ack_text, "an acknowledgement"), self.where)
            row = self._decode(text, f"the summary of {rid}")
            out.append(summary_from_values(row, self.where, ack))
        return out

    def summaries(
        self, *, open_only: bool = False, since_ms: int | None = None, limit: int | None = None
    ) -> list[IncidentSummary]:
        found = self._open_summaries() if open_only else self._all_summaries()
        return newest_first(
            (s for s in found if keep(s, open_only=open_only, since_ms=since_ms)), limit
        )

    def acks(self, ids: Iterable[str]) -> dict[str, Ack]:
        wanted = list(ids)
        if not wanted:
            return {}
        texts = self.conn.run("incidents acks", lambda c: c.hmget(self.acks_key, wanted))
        return {
            i: ack_from_json(self._decode(t, "an acknowledgement"), self.where)
            for i, t in zip(wanted, texts, strict=True)
            if t is not None
        }

    def close(self) -> None:
        return None
