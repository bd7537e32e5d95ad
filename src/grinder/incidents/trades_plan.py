"""Which incidents need the account's trades, over which window, and when (pure).

A position incident (``POSITION_NONZERO_UNEXPECTED``, ``POSITION_QTY_DIVERGENCE``) stands
for a difference, observed - expected, that some fills made. ``GET /fapi/v1/userTrades``
(weight 5, one symbol, at most 7 days) lists them; ``reconcile.trades.account_for`` says
which make up the difference. This module decides, given the time and what was tried
before, which incidents to fetch for now:

* **the window** -- ``startTime`` = the incident's first sighting minus ``margin_ms`` (the
  fills came before the mismatch was seen: the grace period, the check's delay, a
  snapshot's interval when the stream missed them), never more than 7 days before
  ``endTime`` = now;
* **pacing** -- at most one request per incident per ``every_ms``; after a failure (or a
  fetch that did not explain the difference) the wait doubles, up to ``backoff_max_ms``;
* **done** -- an incident whose trades are attached and explain its difference is not
  fetched again, unless the difference changes (another fill; the bot's books moved);
* **the budget** -- at most ``per_pass`` requests after one run (as triage spends at most
  ``triage_query_budget`` lookups a run), and at most ``weight_per_minute`` request weight
  in any 60 s. The IP's share is judged by ``ip_allows``: a fetch goes out only while the
  IP's minute (every client on it, requests in flight included) stays under
  ``ip_share`` of the soft limit after it, and never waits for the window or a 429's
  pause: the weight above that share is left to snapshots and remediation writes;
* **time** -- a pass holds the service's loop for at most ``pass_timeout_ms``: a request
  still out then is abandoned, as a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from grinder.incidents.records import IncidentRecord, TradeRow, TradesEvidence
from grinder.reconcile.trades import (
    TRADES_MAX_WINDOW_MS,
    TRADES_WEIGHT,
    AccountTrade,
    TradesVerdict,
)
from grinder.reconcile.types import Mismatch, MismatchType, PositionSide

POSITION_TYPES = frozenset(
    {MismatchType.POSITION_NONZERO_UNEXPECTED, MismatchType.POSITION_QTY_DIVERGENCE}
)
MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class TradesPolicy:
    """How trades are fetched for incidents (the defaults are the service's)."""

    margin_ms: int = 600_000
    every_ms: int = 10_000
    backoff_max_ms: int = 300_000
    per_pass: int = 2
    weight_per_minute: int = 60
    ip_share: float = 0.5
    pass_timeout_ms: int = 2_000
    """The longest a pass may hold up the service's loop; a request still out then is
    abandoned (a failure, tried again after the backoff)."""

    def __post_init__(self) -> None:
        if not 0 <= self.margin_ms <= TRADES_MAX_WINDOW_MS:
            raise ValueError("trades: margin_ms must be from 0 to 7 days")
        if self.every_ms < 1 or self.backoff_max_ms < self.every_ms:
            raise ValueError("trades: every_ms must be >= 1 and <= backoff_max_ms")
        if self.per_pass < 1 or self.weight_per_minute < TRADES_WEIGHT:
            raise ValueError(f"trades: per_pass >= 1 and weight_per_minute >= {TRADES_WEIGHT}")
        if not 0 < self.ip_share <= 1:
            raise ValueError("trades: ip_share must be in (0, 1]")
        if self.pass_timeout_ms < 1:
            raise ValueError("trades: pass_timeout_ms must be >= 1")


@dataclass(frozen=True, slots=True)
class TradesProgress:
    """What was tried for one incident: the last request, failures in a row, and the
    difference the attached trades were fetched for (and whether they explained it)."""

    last_attempt_ms: int | None = None
    failures: int = 0
    difference: Decimal | None = None
    explained: bool = False


@dataclass(frozen=True, slots=True)
class TradesRequest:
    """One ``userTrades`` request to make for an incident."""

    incident_id: str
    symbol: str
    position_side: PositionSide
    difference: Decimal
    start_ms: int
    end_ms: int


def progress_from(rec: IncidentRecord) -> TradesProgress:
    """What the record says was fetched before (by this process before a restart, or by the
    last leader): trades that explain its difference are not fetched again."""
    t = rec.trades
    if t is None:
        return TradesProgress()
    return TradesProgress(
        last_attempt_ms=t.fetched_ms,
        failures=0 if t.explained else 1,
        difference=Decimal(t.difference),
        explained=t.explained,
    )


def difference_of(m: Mismatch) -> Decimal | None:
    """The position difference a mismatch stands for (observed - expected), or None when
    it is not a position's (or is no difference)."""
    if m.type not in POSITION_TYPES or m.observed_qty is None:
        return None
    diff = m.observed_qty - (m.expected_qty or Decimal(0))
    return diff if diff != 0 else None


def wait_ms(progress: TradesProgress, policy: TradesPolicy) -> int:
    """How long after its last request an incident may be fetched for again."""
    if progress.failures == 0:
        return policy.every_ms
    backoff: int = policy.every_ms * 2 ** min(progress.failures, 30)
    return min(policy.backoff_max_ms, backoff)


def request_for(
    rec: IncidentRecord,
    m: Mismatch,
    progress: TradesProgress,
    now_ms: int,
    policy: TradesPolicy,
) -> TradesRequest | None:
    """The request to make now for ``rec`` (standing as ``m``), or None (see the module doc)."""
    diff = difference_of(m)
    if diff is None or not rec.is_open:
        return None
    changed = progress.difference is not None and progress.difference != diff
    if not changed and progress.explained:
        return None
    last = progress.last_attempt_ms
    wait = policy.every_ms if changed else wait_ms(progress, policy)
    if last is not None and now_ms - last < wait:
        return None
    start = max(rec.first_seen_ms - policy.margin_ms, now_ms - TRADES_MAX_WINDOW_MS, 0)
    return TradesRequest(
        incident_id=rec.id,
        symbol=rec.symbol,
        position_side=m.position_side or PositionSide.BOTH,
        difference=diff,
        start_ms=min(start, now_ms),
        end_ms=now_ms,
    )


def weight_spent(sent_ms: Iterable[int], now_ms: int) -> int:
    """The trades' own request weight of the last 60 s (``sent_ms``: when each went)."""
    return TRADES_WEIGHT * sum(1 for t in sent_ms if now_ms - t < MINUTE_MS)


def plan(
    candidates: Iterable[tuple[IncidentRecord, Mismatch, TradesProgress]],
    now_ms: int,
    policy: TradesPolicy,
    sent_ms: Sequence[int],
) -> list[TradesRequest]:
    """The requests of one pass: the oldest incidents first, at most ``per_pass``, within
    ``weight_per_minute`` over the last 60 s."""
    room = (policy.weight_per_minute - weight_spent(sent_ms, now_ms)) // TRADES_WEIGHT
    wanted = [
        (rec.first_seen_ms, rec.id, req)
        for rec, m, progress in candidates
        if (req := request_for(rec, m, progress, now_ms, policy)) is not None
    ]
    wanted.sort(key=lambda w: (w[0], w[1]))
    return [req for _, _, req in wanted[: max(0, min(policy.per_pass, room))]]


def room_for_one(sent_ms: Iterable[int], now_ms: int, policy: TradesPolicy) -> bool:
    """Whether one more request stays within ``weight_per_minute`` over the last 60 s."""
    return weight_spent(sent_ms, now_ms) + TRADES_WEIGHT <= policy.weight_per_minute


def next_page_start(page: Sequence[AccountTrade], limit: int, start_ms: int) -> int | None:
    """Where the next page of a window starts, or None when ``page`` was its last.

    Asked with ``startTime``, the venue answers the *oldest* ``limit`` trades of the window:
    a full page may leave out the newest fills, the very ones a difference is made of. The
    next page starts at the page's last trade's time (the trades of that millisecond are
    read again; a caller drops those it holds). A full page all of one millisecond cannot
    be paged by time: the read stays incomplete (``ValueError``)."""
    if len(page) < limit:
        return None
    last = max(t.time_ms for t in page)
    if last <= start_ms:
        raise ValueError(f"more than {limit} trades at {start_ms} ms: the read is incomplete")
    return last


def ip_allows(
    used_weight: int, inflight_weight: int, weight_limit: int, slow_down_ratio: float, share: float
) -> bool:
    """Whether a trades request keeps the IP's minute under ``share`` of its soft limit."""
    return used_weight + inflight_weight + TRADES_WEIGHT <= weight_limit * slow_down_ratio * share


def attempted(progress: TradesProgress, now_ms: int) -> TradesProgress:
    return replace(progress, last_attempt_ms=now_ms)


def failed(progress: TradesProgress) -> TradesProgress:
    return replace(progress, failures=progress.failures + 1)


def fetched(progress: TradesProgress, verdict: TradesVerdict) -> TradesProgress:
    """After trades were read and attached: an unexplained difference is tried again
    later, at the backoff's pace."""
    return replace(
        progress,
        failures=0 if verdict.explained else progress.failures + 1,
        difference=verdict.difference,
        explained=verdict.explained,
    )


def evidence_of(verdict: TradesVerdict, req: TradesRequest, fetched_ms: int) -> TradesEvidence:
    """The verdict as the record keeps it."""
    return TradesEvidence(
        fetched_ms=fetched_ms,
        start_ms=req.start_ms,
        end_ms=req.end_ms,
        difference=_text(verdict.difference),
        explained=verdict.explained,
        signed_sum=_text(verdict.accounted),
        unexplained=_text(verdict.remainder),
        trades=tuple(
            TradeRow(
                trade_id=t.trade_id,
                order_id=t.order_id,
                side=t.side.value,
                qty=_text(t.qty),
                price=_text(t.price),
                commission=_text(t.commission),
                commission_asset=t.commission_asset,
                time_ms=t.time_ms,
                position_side=t.position_side.value,
            )
            for t in verdict.trades
        ),
    )


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"
