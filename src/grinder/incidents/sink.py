"""The ledger in the running service: the reporter's hook, the store, the audit trail.

``IncidentLedger`` is what ``reporting.report.Reporter`` tells of each run: the triage
findings, the incidents that appeared and cleared (it answers each with the incident's
id and cause, which the ``RECONCILE_MISMATCH`` lines carry), every remediation result
(a step of its incident) and the run's end (what still stands). It decides nothing
itself: the records come from ``grinder.incidents.ledger``, the causes from
``grinder.incidents.causes``; it reads the evidence, stores, audits and exports.

**Fail-open.** A store that cannot be written (a full disk, Redis down) is logged
(``INCIDENT_STORE_FAILED``) and counted (``grinder_incidents_store_errors_total``); the
record stays in memory and is written again at its next change. Reconciliation and
remediation never wait on the ledger and never stop for it.

**One writer.** Under HA only the instance that holds the lease writes records
(``may_write``); the others read the shared ledger after each run, so their log lines,
metrics and ``grinder incidents`` show the leader's incidents. Taking the lease, an
instance reloads the open incidents and continues them. An acknowledgement may be
written by any instance (or ``grinder incidents ack`` on the store): it is kept apart
from the record, and the writer audits one it had not seen when it reads it back.

**Across restarts.** The open incidents are loaded at start; a mismatch that stands
again continues its incident (same id, no second ``INCIDENT_OPENED``), and one that no
longer stands at the first run is cleared then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from grinder.clock import Clock
from grinder.exchange.binance.stream_windows import ReconnectWindow
from grinder.incidents import ledger as core
from grinder.incidents.causes import CauseVerdict, classify
from grinder.incidents.evidence import EvidenceBook
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.pending import PendingWrites
from grinder.incidents.records import (
    IncidentKey,
    IncidentRecord,
    IncidentSummary,
    TradesEvidence,
)
from grinder.incidents.store import IncidentStore, unknown
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import TriageFinding
from grinder.reconcile.labels import Event, IncidentCause, Mode
from grinder.reconcile.types import Mismatch, PositionKey, PositionSide
from grinder.reporting.audit import AuditWriter
from grinder.reporting.logs import log_event

log = logging.getLogger("grinder.incidents")

REFRESH_EVERY_MS = 5_000
"""How often the writer reads acknowledgements back, and a reader the open incidents."""
PRUNE_EVERY_MS = 600_000
_FAILED: Any = object()


@dataclass(frozen=True)
class LedgerInputs:
    """What the classifier reads from the running service, read when an incident opens."""

    heartbeat_age_s: Callable[[], float] | None = None
    windows: Callable[[], Sequence[ReconnectWindow]] = lambda: ()
    recorded_by_bot: Callable[[str], bool] = lambda _cid: False
    position_changed_ms: Callable[[PositionKey], int | None] = lambda _key: None


class IncidentLedger:
    def __init__(
        self,
        store: IncidentStore,
        config: ReconcileConfig,
        *,
        clock: Clock,
        evidence: EvidenceBook | None = None,
        inputs: LedgerInputs | None = None,
        audit: AuditWriter | None = None,
        metrics: IncidentMetrics | None = None,
        may_write: Callable[[], bool] = lambda: True,
        retention: core.Retention | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.evidence = evidence if evidence is not None else EvidenceBook()
        self.inputs = inputs or LedgerInputs()
        self.audit = audit
        self.metrics = metrics
        self.may_write = may_write
        self.retention = retention or core.Retention()
        self._open: dict[IncidentKey, IncidentRecord] = {}
        """The open incidents, as last folded (``PendingWrites`` holds what came since)."""
        self._pending = PendingWrites()
        self._writer: bool | None = None
        self._detected = False
        self._refreshed_ms = 0
        self._looked_at = -1
        """The evidence's ``version`` unknown causes were last looked at against."""
        self._pruned_ms: int | None = None
        self._standing: dict[IncidentKey, Mismatch] = {}
        """The mismatches the last run left standing, as that run saw them."""
        """The trades step the service awaits after each run (``incidents.trades``; set by
        ``service/incidents.py`` once the venue is connected): the requests it sent."""
        if metrics is not None:
            metrics.watch_oldest(self.oldest_unacknowledged_s)

    # --- the store, fail-open ------------------------------------------------------------------

    def _store(self, op: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or ``_FAILED`` (logged and counted) when the store refused or failed."""
        try:
            return fn()
        except Exception as exc:  # the ledger never stops reconciliation
            if self.metrics is not None:
                self.metrics.store_errors.inc()
            log_event(
                log,
                "INCIDENT_STORE_FAILED",
                logging.WARNING,
                op=op,
                store=self.store.kind,
                error=" ".join(f"{type(exc).__name__}: {exc}".split()),
            )
            return _FAILED

    def _flush(self, now: int, *, everything: bool = False) -> None:
        """Write, in one batch, what is due (``PendingWrites``); what fails stays due."""
        due = self._pending.due(self._open, now, everything=everything)
        for rec in due:
            if rec.is_open and rec.key in self._open:
                self._open[rec.key] = rec
        if not due:
            return
        if self._store("put", lambda: self.store.put_many(due)) is _FAILED:
            self._pending.failed(due)
        else:
            self._pending.written(due, now)

    def load(self) -> None:
        """Read the open incidents from the store (at start, and on taking the lease)."""
        records = self._store("load", self.store.open_incidents)
        if records is _FAILED:
            return
        self._open = {r.key: r for r in records}
        self._pending = PendingWrites()
        self._pending.loaded(records, self.clock())
        self._set_open_metrics()

    def _sync_role(self) -> bool:
        writer = self.may_write()
        if writer and self._writer is not True:
            self.load()  # continue what the last writer (or the last process) left open
        self._writer = writer
        return writer

    # --- the reporter's hook -------------------------------------------------------------------

    def triaged(self, findings: Iterable[TriageFinding]) -> None:
        self.evidence.record_triage(findings, self.clock())

    def incidents(
        self, run_id: str, new: Iterable[Mismatch], cleared: Iterable[Mismatch]
    ) -> dict[IncidentKey, dict[str, Any]]:
        """Open, continue or clear the incidents of a run; the fields each mismatch's log
        line carries (``incident_id``, ``cause``) by mismatch key."""
        now = self.clock()
        writer = self._sync_role()
        self._detected = True
        fields: dict[IncidentKey, dict[str, Any]] = {}
        for m in new:
            rec = self._open.get(m.key)
            if rec is None and writer:
                rec = self._open_incident(m, now, run_id)
            if rec is not None:
                fields[m.key] = {"incident_id": rec.id, "cause": rec.cause.value}
        for m in cleared:
            rec = self._open.get(m.key)
            if rec is None:
                continue
            fields[m.key] = {"incident_id": rec.id, "cause": rec.cause.value}
            if writer:
                self._clear(rec, now, run_id)
        return fields

    def _open_incident(self, m: Mismatch, now: int, run_id: str) -> IncidentRecord:
        rec = core.opened(m, now, run_id, self._classify(m, now))
        stored = self._store("open", lambda: self.store.open_or_adopt(rec))
        if stored is _FAILED:
            self._pending.change(rec, urgent=True)
        elif stored.id != rec.id:
            adopted: IncidentRecord = stored  # open already (another instance, an earlier process)
            self._open[m.key] = adopted
            self._pending.written_now(adopted.id, now)
            return adopted
        else:
            self._pending.written_now(rec.id, now)
        self._open[m.key] = rec
        if self.metrics is not None:
            self.metrics.opened.labels(cause=rec.cause.value).inc()
        self._audit(
            Event.INCIDENT_OPENED,
            rec,
            run_id,
            now,
            cause=rec.cause.value,
            evidence=[e.summary for e in rec.evidence],
            first_seen_ms=rec.first_seen_ms,
        )
        return rec

    def _clear(self, rec: IncidentRecord, now: int, run_id: str) -> None:
        done = core.cleared(self._pending.fold(rec), now)
        del self._open[rec.key]
        self._pending.change(done, urgent=True)
        self._audit(
            Event.INCIDENT_CLEARED,
            done,
            run_id,
            now,
            cause=done.cause.value,
            first_seen_ms=done.first_seen_ms,
            cleared_ms=done.cleared_ms,
            duration_ms=(done.cleared_ms or now) - done.first_seen_ms,
            steps=len(done.steps),
            acknowledged=done.ack is not None,
        )

    def result(self, result: ActionResult) -> None:
        rec = self._open.get(result.mismatch.key)
        if rec is None or not self._writer:
            return
        self._pending.step(rec, core.step_of(result))

    def run_end(self, run_id: str, standing: Iterable[Mismatch]) -> None:
        """After a run: clear what no longer stands (left from before a restart or a
        failover), keep ``last_seen_ms``, give an unknown cause a second look."""
        now = self.clock()
        writer = self._sync_role()
        refresh = now - self._refreshed_ms >= REFRESH_EVERY_MS
        look_again = refresh and self.evidence.version != self._looked_at
        self._looked_at = self.evidence.version if refresh else self._looked_at
        if writer and self._detected:
            current = {m.key: m for m in standing}
            self._standing = current
            for key, rec in list(self._open.items()):
                m = current.get(key)
                if m is None:
                    self._clear(rec, now, run_id)
                    continue
                self._advance(rec, m, now, look_again=look_again)
        if writer:
            self._flush(now)
        self._detected = False
        if refresh:
            self._refreshed_ms = now
            self._refresh(writer, now)
        if writer and (self._pruned_ms is None or now - self._pruned_ms >= PRUNE_EVERY_MS):
            self._pruned_ms = now
            self._store("prune", lambda: self.store.prune(now, self.retention))
        self._set_open_metrics()

    def _advance(self, rec: IncidentRecord, m: Mismatch, now: int, *, look_again: bool) -> None:
        """A standing incident seen again; an unknown cause looked at again when new evidence
        came in (at most every ``REFRESH_EVERY_MS``)."""
        self._pending.seen(rec.id, now)
        if look_again and rec.cause is IncidentCause.UNKNOWN:
            new = core.reclassified(rec, self._classify(m, now))
            if new is not rec:
                self._open[new.key] = new
                self._pending.change(new, urgent=True)

    def _refresh(self, writer: bool, now: int) -> None:
        if not writer:
            self.load()
            return
        ids = [r.id for r in self._open.values()]
        acks = self._store("acks", lambda: self.store.acks(ids))
        if acks is _FAILED or not acks:
            return
        for key, rec in list(self._open.items()):
            ack = acks.get(rec.id)
            if ack is not None and ack != rec.ack:
                self._open[key] = replace(rec, ack=ack)
                self._audit_ack(self._open[key], now, via="store")

    # --- the account's trades (``incidents.trades_plan``; fetched by ``incidents.trades``) ------

    def standing_records(self) -> list[tuple[IncidentRecord, Mismatch]]:
        """The open incidents with the mismatch the last run saw; none unless this instance
        writes the ledger."""
        if not self._writer:
            return []
        return [(r, m) for k, r in self._open.items() if (m := self._standing.get(k)) is not None]

    def attach_trades(self, key: IncidentKey, incident_id: str, trades: TradesEvidence) -> bool:
        """Put ``trades`` on the open incident ``incident_id`` and write it now; False when it
        is no longer open here (cleared, or this instance lost the lease)."""
        rec = self._open.get(key)
        if rec is None or rec.id != incident_id or not self._writer or not self.may_write():
            return False
        new = core.with_trades(self._pending.fold(rec), trades)
        self._open[key] = new
        self._pending.change(new, urgent=True)
        self._flush(self.clock())
        return True

    # --- operators -----------------------------------------------------------------------------

    def acknowledge(self, incident_id: str, by: str, note: str) -> IncidentRecord:
        """Acknowledge one incident (``LedgerError`` for an empty note, ``UnknownIncident``)."""
        now = self.clock()
        clean_by, clean_note = core.check_ack(by, note)
        rec = self.store.get(incident_id)
        if rec is None:
            raise unknown(incident_id, self.store.where)
        acked = core.acknowledged(rec, clean_by, clean_note, now)
        assert acked.ack is not None
        stored = self.store.acknowledge(incident_id, acked.ack)
        if rec.key in self._open and self._open[rec.key].id == incident_id:
            self._open[rec.key] = replace(self._open[rec.key], ack=stored.ack)
        self._audit_ack(stored, now, via="service")
        return stored

    def get(self, incident_id: str) -> IncidentRecord | None:
        return self.store.get(incident_id)

    def summaries(
        self, *, open_only: bool = False, since_ms: int | None = None, limit: int | None = None
    ) -> list[IncidentSummary]:
        return self.store.summaries(open_only=open_only, since_ms=since_ms, limit=limit)

    def close(self) -> None:
        """Write what is not written yet -- only while this instance may still write (under
        HA the lease is handed over first: the next leader continues from the store) --
        then close the store."""
        if self._writer and self.may_write():
            self._flush(self.clock(), everything=True)
        self._store("close", self.store.close)

    def open_records(self) -> list[IncidentRecord]:
        return list(self._open.values())

    def oldest_unacknowledged_s(self) -> float:
        now = self.clock()
        ages = [now - r.first_seen_ms for r in self._open.values() if r.ack is None]
        return max(0.0, max(ages) / 1000) if ages else 0.0

    # --- helpers -------------------------------------------------------------------------------

    def _classify(self, m: Mismatch, now: int) -> CauseVerdict:
        cfg = self.config
        inputs = self.inputs
        side = m.position_side or PositionSide.BOTH
        beat = inputs.heartbeat_age_s
        try:
            facts = self.evidence.facts_for(
                m,
                now,
                prefix=cfg.client_order_id_prefix,
                strategy_allowlist=frozenset(cfg.allowed_strategies),
                windows=inputs.windows(),
                heartbeat_age_s=None if beat is None else beat(),
                max_heartbeat_age_s=cfg.expected_heartbeat_max_age_s,
                recorded_by_bot=inputs.recorded_by_bot,
                position_changed_ms=(
                    inputs.position_changed_ms((m.symbol, side))
                    if m.client_order_id is None
                    else None
                ),
            )
        except Exception as exc:  # a source that cannot be read: the cause stays unknown
            log_event(log, "INCIDENT_EVIDENCE_FAILED", logging.WARNING, error=f"{exc!r}")
            return CauseVerdict(IncidentCause.UNKNOWN)
        return classify(facts)

    def _set_open_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.set_open(self._open.values())

    def _audit(
        self, event: Event, rec: IncidentRecord, run_id: str | None, now: int, **extra: Any
    ) -> None:
        if self.audit is None:
            return
        cfg = self.config
        self.audit.write(
            event,
            {
                "ts_ms": now,
                "run_id": run_id,
                "mode": Mode.DRY_RUN if cfg.dry_run else Mode.LIVE,
                "action": cfg.action.value,
                "incident_id": rec.id,
                "mismatch_type": rec.type.value,
                "symbol": rec.symbol,
                "client_order_id": rec.client_order_id,
                "position_side": rec.position_side,
                **extra,
            },
        )

    def _audit_ack(self, rec: IncidentRecord, now: int, *, via: str) -> None:
        ack = rec.ack
        if ack is None:
            return
        log_event(log, Event.INCIDENT_ACKNOWLEDGED, incident_id=rec.id, by=ack.by, via=via)
        self._audit(
            Event.INCIDENT_ACKNOWLEDGED,
            rec,
            None,
            now,
            by=ack.by,
            note=ack.note,
            acknowledged_ms=ack.ts_ms,
            via=via,
            open=rec.is_open,
        )
