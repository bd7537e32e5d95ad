"""The account's trades fetched for position incidents and attached to their records (shell).

After each run the service calls ``TradesFetcher.after_run``: it asks
``incidents.trades_plan`` which incidents to fetch for now, sends each request
(``GET /fapi/v1/userTrades``) only while this instance writes the ledger (under HA: holds
the lease) and while the IP's weight allows it (``trades_plan.ip_allows``; it never waits
for the weight window or a 429's pause: it is withheld and tried at a later pass), and
puts the verdict of ``reconcile.trades.account_for`` on the record
(``IncidentLedger.attach_trades``). A window of more than 1,000 fills is read page after
page (``trades_plan.next_page_start``; each page one request, within the pass's time and
weight): a verdict is never made over part of a window. Trades read while the lease was
lost are not written, and not remembered as fetched. A failed fetch -- an error, or no
answer within the pass's time (``TradesPolicy.pass_timeout_ms``) -- leaves the record as it
was; it is counted, logged (``INCIDENT_TRADES_FAILED``) and tried again after a backoff.
Nothing here -- a record this version cannot read included -- stops a run or the service,
or holds its loop longer than that.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from grinder.clock import Clock
from grinder.exchange.binance.ip_limits import IpLimits
from grinder.exchange.port import ExchangeError
from grinder.incidents import trades_plan as plan
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.sink import IncidentLedger
from grinder.reconcile.trades import TRADES_LIMIT, TRADES_WEIGHT, AccountTrade, account_for
from grinder.reporting.logs import log_event

log = logging.getLogger("grinder.incidents")


class TradesSource(Protocol):
    """What the fetch asks of the venue (``ExchangePort.fetch_user_trades``)."""

    async def fetch_user_trades(
        self, symbol: str, *, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[AccountTrade]: ...


class TradesFetcher:
    def __init__(
        self,
        ledger: IncidentLedger,
        source: TradesSource,
        *,
        clock: Clock,
        limits: IpLimits | None = None,
        may_fetch: Callable[[], bool] = lambda: True,
        metrics: IncidentMetrics | None = None,
        policy: plan.TradesPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.source = source
        self.clock = clock
        self.limits = limits
        self.may_fetch = may_fetch
        self.metrics = metrics if metrics is not None else ledger.metrics
        self.policy = policy or plan.TradesPolicy()
        self.progress: dict[str, plan.TradesProgress] = {}
        self._sent: deque[int] = deque(maxlen=max(1, self.policy.weight_per_minute))
        self.requests = 0
        """Requests sent (for the benchmark and tests)."""

    def _ip_allows(self) -> bool:
        limits = self.limits
        if limits is None:
            return True
        if limits.pause_left_ms() > 0 or limits.ban_remaining_s() > 0:
            return False
        limits.over_soft_limit(0)  # starts the new minute's count when the minute turned
        return plan.ip_allows(
            limits.used_weight,
            limits.inflight_weight,
            limits.weight_limit,
            limits.slow_down_ratio,
            self.policy.ip_share,
        )

    def _spent(self) -> None:
        if self.metrics is not None:
            self.metrics.trade_fetch_weight.inc(TRADES_WEIGHT)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.trade_fetches.labels(outcome=outcome).inc()

    async def after_run(self) -> int:
        """One pass (see the module doc); the number of requests sent. It never raises: the
        service's loop awaits it after each run."""
        try:
            return await self._pass()
        except Exception as exc:  # e.g. a record this version cannot read: logged, not fatal
            self._count("failed")
            log_event(
                log,
                "INCIDENT_TRADES_FAILED",
                logging.WARNING,
                incident_id="-",
                error=" ".join(f"{type(exc).__name__}: {exc}".split()),
            )
            return 0

    async def _pass(self) -> int:
        if not self.may_fetch():
            self.progress.clear()  # read again from the records when this instance leads again
            return 0
        now = self.clock()
        standing = self.ledger.standing_records()
        ids = {rec.id for rec, _ in standing}
        for gone in [i for i in self.progress if i not in ids]:
            del self.progress[gone]
        for rec, _ in standing:
            if rec.id not in self.progress:
                self.progress[rec.id] = plan.progress_from(rec)
        candidates = [(rec, m, self.progress[rec.id]) for rec, m in standing]
        keys = {rec.id: rec.key for rec, _ in standing}
        sent = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.pass_timeout_ms / 1000
        for req in plan.plan(candidates, now, self.policy, self._sent):
            if not self.may_fetch() or loop.time() >= deadline:
                break
            if not plan.room_for_one(self._sent, now, self.policy):
                break  # a window read in pages spent the pass's room
            if not self._ip_allows():
                self._count("withheld")
                break
            sent += 1
            await self._fetch(req, keys[req.incident_id], deadline)
        return sent

    async def _fetch(
        self, req: plan.TradesRequest, key: tuple[str, str, str], deadline: float
    ) -> None:
        progress = plan.attempted(self.progress[req.incident_id], req.end_ms)
        self.progress[req.incident_id] = progress
        try:
            trades = await self._read_window(req, deadline)
        except Exception as exc:  # the ledger never stops reconciliation (a timeout included)
            if _left_unanswered(exc):
                self._spent()
            self.progress[req.incident_id] = plan.failed(progress)
            self._count("failed")
            log_event(
                log,
                "INCIDENT_TRADES_FAILED",
                logging.WARNING,
                incident_id=req.incident_id,
                symbol=req.symbol,
                error=" ".join(f"{type(exc).__name__}: {exc}".split()),
            )
            return
        verdict = account_for(trades, req.difference, req.position_side)
        evidence = plan.evidence_of(verdict, req, self.clock())
        if not self.ledger.attach_trades(key, req.incident_id, evidence):
            return  # not written (the lease lost meanwhile): nothing to remember as fetched
        self.progress[req.incident_id] = plan.fetched(progress, verdict)
        self._count("explained" if verdict.explained else "not_explained")
        log_event(
            log,
            "INCIDENT_TRADES",
            incident_id=req.incident_id,
            symbol=req.symbol,
            difference=evidence.difference,
            trades=len(evidence.trades),
            explained=verdict.explained,
            unexplained=evidence.unexplained,
        )

    async def _read_window(self, req: plan.TradesRequest, deadline: float) -> list[AccountTrade]:
        """Every trade of the request's window, page after page (``plan.next_page_start``);
        each page one request, within the pass's time and weight (else ``TradesIncomplete``)."""
        loop = asyncio.get_running_loop()
        held: dict[int, AccountTrade] = {}
        start: int | None = req.start_ms
        while start is not None:
            if held and not (
                loop.time() < deadline
                and self.may_fetch()
                and self._ip_allows()
                and plan.room_for_one(self._sent, req.end_ms, self.policy)
            ):
                raise TradesIncomplete(f"{len(held)} trades read, the rest withheld")
            self._sent.append(req.end_ms)
            self.requests += 1
            page = await asyncio.wait_for(
                self.source.fetch_user_trades(
                    req.symbol, start_ms=start, end_ms=req.end_ms, limit=TRADES_LIMIT
                ),
                max(0.0, deadline - loop.time()),
            )
            self._spent()
            held.update((t.trade_id, t) for t in page)
            try:
                start = plan.next_page_start(page, TRADES_LIMIT, start)
            except ValueError as exc:
                raise TradesIncomplete(str(exc)) from None
        return list(held.values())


class TradesIncomplete(Exception):
    """A window's pages not all read (the pass's time or weight ran out): nothing attached."""


def _left_unanswered(exc: Exception) -> bool:
    """Whether the request that failed with ``exc`` left (its weight is spent): not when the
    port refused it before it left, nor when the window was given up between pages (each
    page read is counted as it comes)."""
    if isinstance(exc, TradesIncomplete):
        return False
    return not isinstance(exc, ExchangeError) or exc.sent
