"""Where the ledger's records live: one interface, three stores.

``IncidentStore`` is the contract every store keeps (held to it by
``tests/unit/test_incident_store_contract.py``, run against each):

* at most one open incident per key: ``open_or_adopt`` stores a new open incident
  unless one is already open for its key, and then returns that one (two writers
  racing -- an HA failover -- end with one incident);
* ``put`` writes a record (``put_many`` several, in one transaction), never its
  acknowledgement: ``acknowledge`` keeps that
  apart, so an operator's acknowledgement is never lost to the service writing the
  record at the same moment;
* ``summaries`` lists the newest first; ``since_ms`` keeps those open at any time since
  (open now, or cleared at or after it); ``open_only`` the open ones;
* ``prune`` removes what ``ledger.to_drop`` says (cleared incidents past the retention);
* a record or a store that cannot be read is ``LedgerCorrupt`` naming where.

``MemoryIncidentStore`` (a service alone without ``--ledger-db``: kept until it exits),
``SqliteIncidentStore`` (``--ledger-db FILE``), ``RedisIncidentStore`` (HA: the
deployment's namespace, so a new leader continues the old one's incidents).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from grinder.incidents.ledger import Retention, RetentionEntry, to_drop
from grinder.incidents.records import (
    Ack,
    IncidentKey,
    IncidentRecord,
    IncidentSummary,
    UnknownIncident,
)


class IncidentStore(Protocol):
    kind: str
    """``memory``, ``sqlite`` or ``redis``."""
    where: str
    """The store as messages name it (a path, a masked URL and namespace)."""

    def open_or_adopt(self, rec: IncidentRecord) -> IncidentRecord: ...

    def put(self, rec: IncidentRecord) -> None: ...

    def put_many(self, records: Iterable[IncidentRecord]) -> None: ...

    def get(self, incident_id: str) -> IncidentRecord | None: ...

    def open_incidents(self) -> list[IncidentRecord]: ...

    def summaries(
        self, *, open_only: bool = False, since_ms: int | None = None, limit: int | None = None
    ) -> list[IncidentSummary]: ...

    def acknowledge(self, incident_id: str, ack: Ack) -> IncidentRecord: ...

    def acks(self, ids: Iterable[str]) -> dict[str, Ack]: ...

    def prune(self, now_ms: int, retention: Retention) -> int: ...

    def close(self) -> None: ...


def key_text(key: IncidentKey) -> str:
    """An incident key as one string (type, symbol and subject never contain ``|``)."""
    return "|".join(key)


def keep(s: IncidentSummary, *, open_only: bool, since_ms: int | None) -> bool:
    """The filter of ``summaries``."""
    if open_only and not s.is_open:
        return False
    return since_ms is None or s.cleared_ms is None or s.cleared_ms >= since_ms


def newest_first(items: Iterable[IncidentSummary], limit: int | None) -> list[IncidentSummary]:
    ordered = sorted(items, key=lambda s: (s.first_seen_ms, s.id), reverse=True)
    return ordered if limit is None else ordered[:limit]


def unknown(incident_id: str, where: str) -> UnknownIncident:
    return UnknownIncident(
        f"no incident {incident_id!r} in {where} (grinder incidents list shows the ids)"
    )


class MemoryIncidentStore:
    """The ledger in this process only (lost when it exits)."""

    kind = "memory"

    def __init__(self) -> None:
        self.where = "memory (lost at exit: --ledger-db FILE keeps it)"
        self._records: dict[str, IncidentRecord] = {}
        self._acks: dict[str, Ack] = {}
        self._open: dict[str, str] = {}

    def _with_ack(self, rec: IncidentRecord) -> IncidentRecord:
        return replace(rec, ack=self._acks.get(rec.id))

    def open_or_adopt(self, rec: IncidentRecord) -> IncidentRecord:
        existing = self._open.get(key_text(rec.key))
        if existing is not None:
            return self._with_ack(self._records[existing])
        self.put(rec)
        return self._with_ack(rec)

    def put_many(self, records: Iterable[IncidentRecord]) -> None:
        for rec in records:
            self.put(rec)

    def put(self, rec: IncidentRecord) -> None:
        self._records[rec.id] = replace(rec, ack=None)
        key = key_text(rec.key)
        if rec.is_open:
            self._open.setdefault(key, rec.id)
        elif self._open.get(key) == rec.id:
            del self._open[key]

    def get(self, incident_id: str) -> IncidentRecord | None:
        rec = self._records.get(incident_id)
        return None if rec is None else self._with_ack(rec)

    def open_incidents(self) -> list[IncidentRecord]:
        return [self._with_ack(self._records[i]) for i in self._open.values()]

    def summaries(
        self, *, open_only: bool = False, since_ms: int | None = None, limit: int | None = None
    ) -> list[IncidentSummary]:
        acks = self._acks
        found = []
        for r in self._records.values():
            s = r.summary()
            ack = acks.get(r.id)
            if ack is not None:
                s = s._replace(ack_by=ack.by, ack_ts_ms=ack.ts_ms)
            if keep(s, open_only=open_only, since_ms=since_ms):
                found.append(s)
        return newest_first(found, limit)

    def acknowledge(self, incident_id: str, ack: Ack) -> IncidentRecord:
        if incident_id not in self._records:
            raise unknown(incident_id, self.where)
        self._acks[incident_id] = ack
        return self._with_ack(self._records[incident_id])

    def acks(self, ids: Iterable[str]) -> dict[str, Ack]:
        return {i: self._acks[i] for i in ids if i in self._acks}

    def prune(self, now_ms: int, retention: Retention) -> int:
        entries = (
            RetentionEntry(r.id, r.first_seen_ms, r.cleared_ms) for r in self._records.values()
        )
        drop = to_drop(entries, now_ms, retention)
        for incident_id in drop:
            self._records.pop(incident_id, None)
            self._acks.pop(incident_id, None)
        return len(drop)

    def close(self) -> None:
        return None
