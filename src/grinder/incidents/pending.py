"""What the ledger has not written yet, so that a run costs (almost) nothing to record.

A standing incident changes every run -- it was seen again, its gate blocked again --
and writing that every run (every 10 s per incident, an fsync each) would cost more than
detection itself. So the changes wait here: a run's sightings and steps are folded into
their records (``ledger.seen``, ``ledger.with_steps``: the same decisions) only when the
records are written. What must not wait -- an incident opened or cleared, a step unlike
the last, a cause found -- is *urgent* and goes out at the end of the run; the rest when
``LAST_SEEN_EVERY_MS`` has passed since the incident's last write, or at close.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from grinder.incidents import ledger as core
from grinder.incidents.records import IncidentKey, IncidentRecord, Step

LAST_SEEN_EVERY_MS = 60_000


class PendingWrites:
    def __init__(self) -> None:
        self._steps: dict[str, list[Step]] = {}
        self._seen: dict[str, int] = {}
        self._changed: dict[str, IncidentRecord] = {}
        """Records changed otherwise (opened, cleared, a new cause), the latest version."""
        self._urgent: set[str] = set()
        self._written_ms: dict[str, int] = {}

    def loaded(self, records: Iterable[IncidentRecord], now: int) -> None:
        """Records read from the store: written as they are now."""
        for rec in records:
            self._written_ms[rec.id] = now

    def written_now(self, incident_id: str, now: int) -> None:
        self._written_ms[incident_id] = now

    def seen(self, incident_id: str, now: int) -> None:
        self._seen[incident_id] = now

    def step(self, rec: IncidentRecord, step: Step) -> None:
        """A remediation outcome for ``rec``; urgent unless it repeats the last step."""
        steps = self._steps.setdefault(rec.id, [])
        last = steps[-1] if steps else (rec.steps[-1] if rec.steps else None)
        if last is None or not last.same_as(step):
            self._urgent.add(rec.id)
        steps.append(step)

    def change(self, rec: IncidentRecord, *, urgent: bool) -> None:
        self._changed[rec.id] = rec
        if urgent:
            self._urgent.add(rec.id)

    def fold(self, rec: IncidentRecord) -> IncidentRecord:
        """``rec`` with its pending sightings and steps in it (and no longer pending)."""
        steps = self._steps.pop(rec.id, None)
        seen_ms = self._seen.pop(rec.id, None)
        out = rec if seen_ms is None else core.seen(rec, seen_ms)
        return out if not steps else core.with_steps(out, steps)

    def has(self, incident_id: str) -> bool:
        return (
            incident_id in self._steps
            or incident_id in self._seen
            or incident_id in (self._changed)
        )

    def due(
        self, open_records: Mapping[IncidentKey, IncidentRecord], now: int, *, everything: bool
    ) -> list[IncidentRecord]:
        """The records to write now, folded: every urgent one, those whose last write is
        ``LAST_SEEN_EVERY_MS`` old, or (``everything``) all."""
        out: list[IncidentRecord] = []
        for i, rec in list(self._changed.items()):
            if open_records.get(rec.key, rec).id != i or not rec.is_open:
                out.append(rec)  # cleared (or replaced): only this version exists
        for rec in open_records.values():
            i = rec.id
            if not self.has(i):
                continue
            if (
                everything
                or i in self._urgent
                or now - self._written_ms.get(i, 0) >= (LAST_SEEN_EVERY_MS)
            ):
                out.append(self.fold(rec))
        return out

    def written(self, records: Iterable[IncidentRecord], now: int) -> None:
        for rec in records:
            self._changed.pop(rec.id, None)
            self._urgent.discard(rec.id)
            if rec.is_open:
                self._written_ms[rec.id] = now
            else:
                self._written_ms.pop(rec.id, None)

    def failed(self, records: Iterable[IncidentRecord]) -> None:
        """Records a write refused: kept (folded) and urgent, for the next run's end."""
        for rec in records:
            self.change(rec, urgent=True)
