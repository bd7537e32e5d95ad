"""The trades behind a position incident: which incidents to fetch for, when, over which
window (``incidents.trades_plan``, pure), the record's trades in its JSON form and in
``grinder incidents show``, and the fetch itself over a port that answers or fails."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from grinder.incidents import ledger as core
from grinder.incidents import trades_plan as plan
from grinder.incidents.causes import CauseVerdict
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.record_json import full_json, record_from_json, record_to_json
from grinder.incidents.records import IncidentRecord, LedgerCorrupt
from grinder.incidents.render import detail
from grinder.incidents.sink import IncidentLedger
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import MemoryIncidentStore
from grinder.incidents.trades import TradesFetcher
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.labels import IncidentCause
from grinder.reconcile.trades import (
    TRADES_MAX_WINDOW_MS,
    TRADES_WEIGHT,
    AccountTrade,
    account_for,
)
from grinder.reconcile.types import Mismatch, MismatchType, PositionSide, Side
from tests.support.mismatches import ORPHAN

T0 = 1_800_000_000_000
UNKNOWN = CauseVerdict(IncidentCause.UNKNOWN)
POLICY = plan.TradesPolicy(margin_ms=60_000, every_ms=10_000, backoff_max_ms=80_000)


def position(observed: str, expected: str = "0", symbol: str = "ETHUSDT") -> Mismatch:
    return Mismatch(
        type=(
            MismatchType.POSITION_NONZERO_UNEXPECTED
            if Decimal(expected) == 0
            else MismatchType.POSITION_QTY_DIVERGENCE
        ),
        symbol=symbol,
        position_side=PositionSide.BOTH,
        expected_qty=Decimal(expected),
        observed_qty=Decimal(observed),
    )


def trade(n: int, side: Side, qty: str, ts: int, order: int = 7) -> AccountTrade:
    return AccountTrade(
        symbol="ETHUSDT",
        trade_id=n,
        order_id=order,
        side=side,
        price=Decimal("2000.5"),
        qty=Decimal(qty),
        commission=Decimal("0.04"),
        commission_asset="USDT",
        time_ms=ts,
    )


def opened(m: Mismatch, at: int = T0) -> IncidentRecord:
    return core.opened(m, at, "run-1", UNKNOWN)


# --- the decision ---------------------------------------------------------------------------------


def test_only_a_position_difference_needs_trades() -> None:
    assert plan.difference_of(position("0.05")) == Decimal("0.05")
    assert plan.difference_of(position("0.01", "0.03")) == Decimal("-0.02")
    assert plan.difference_of(ORPHAN) is None
    rec = opened(ORPHAN)
    assert plan.request_for(rec, ORPHAN, plan.TradesProgress(), T0, POLICY) is None


def test_the_window_starts_a_margin_before_the_first_sighting_and_ends_now() -> None:
    m = position("0.05")
    rec = opened(m)
    req = plan.request_for(rec, m, plan.TradesProgress(), T0 + 5_000, POLICY)
    assert req is not None
    assert (req.start_ms, req.end_ms) == (T0 - 60_000, T0 + 5_000)
    assert (req.symbol, req.position_side, req.difference) == (
        "ETHUSDT",
        PositionSide.BOTH,
        Decimal("0.05"),
    )


def test_the_window_is_never_longer_than_seven_days() -> None:
    m = position("0.05")
    rec = opened(m)
    now = T0 + 30 * core.DAY_MS
    req = plan.request_for(rec, m, plan.TradesProgress(), now, POLICY)
    assert req is not None
    assert req.end_ms - req.start_ms == TRADES_MAX_WINDOW_MS


def test_one_request_per_incident_per_interval_and_none_once_explained() -> None:
    m = position("0.05")
    rec = opened(m)
    p = plan.attempted(plan.TradesProgress(), T0)
    assert plan.request_for(rec, m, p, T0 + 9_999, POLICY) is None
    assert plan.request_for(rec, m, p, T0 + 10_000, POLICY) is not None
    verdict = account_for([trade(1, Side.BUY, "0.05", T0 - 1)], Decimal("0.05"))
    done = plan.fetched(p, verdict)
    assert done.explained
    assert plan.request_for(rec, m, done, T0 + 10**9, POLICY) is None


def test_a_changed_difference_is_fetched_again_after_the_interval() -> None:
    m = position("0.05")
    rec = opened(m)
    verdict = account_for([trade(1, Side.BUY, "0.05", T0 - 1)], Decimal("0.05"))
    done = plan.fetched(plan.attempted(plan.TradesProgress(), T0), verdict)
    more = position("0.08")
    assert plan.request_for(rec, more, done, T0 + 9_999, POLICY) is None
    req = plan.request_for(rec, more, done, T0 + 10_000, POLICY)
    assert req is not None
    assert req.difference == Decimal("0.08")


def test_failures_back_off_doubling_up_to_the_cap() -> None:
    m = position("0.05")
    rec = opened(m)
    p = plan.TradesProgress()
    waits = []
    for _ in range(5):
        p = plan.failed(plan.attempted(p, T0))
        waits.append(plan.wait_ms(p, POLICY))
        assert plan.request_for(rec, m, p, T0 + waits[-1] - 1, POLICY) is None
        assert plan.request_for(rec, m, p, T0 + waits[-1], POLICY) is not None
    assert waits == [20_000, 40_000, 80_000, 80_000, 80_000]


def test_a_fetch_that_does_not_explain_is_tried_again_at_the_backoffs_pace() -> None:
    m = position("0.05")
    rec = opened(m)
    short = account_for([trade(1, Side.BUY, "0.02", T0 - 1)], Decimal("0.05"))
    p = plan.fetched(plan.attempted(plan.TradesProgress(), T0), short)
    assert not p.explained
    assert p.failures == 1
    assert plan.request_for(rec, m, p, T0 + 19_999, POLICY) is None
    assert plan.request_for(rec, m, p, T0 + 20_000, POLICY) is not None


def test_a_pass_takes_the_oldest_incidents_first_within_its_count_and_the_minutes_weight() -> None:
    recs = [
        (opened(position("1", symbol=s), T0 + i), position("1", symbol=s))
        for i, s in enumerate(["C", "A", "B"])
    ]
    cands = [(r, m, plan.TradesProgress()) for r, m in reversed(recs)]
    got = plan.plan(cands, T0 + 1_000, POLICY, sent_ms=())
    assert [r.symbol for r in got] == ["C", "A"]  # per_pass 2, by first sighting
    minute_full = [
        T0 + 1_000 - 59_999 + i for i in range(POLICY.weight_per_minute // TRADES_WEIGHT)
    ]
    assert plan.plan(cands, T0 + 1_000, POLICY, sent_ms=minute_full) == []
    one_left = minute_full[1:]
    assert len(plan.plan(cands, T0 + 1_000, POLICY, sent_ms=one_left)) == 1
    assert plan.weight_spent([T0 - 60_000, T0 - 59_999], T0) == TRADES_WEIGHT


def test_the_ip_share_leaves_the_upper_part_of_the_window_to_snapshots_and_writes() -> None:
    soft = 2400 * 0.8
    assert plan.ip_allows(0, 0, 2400, 0.8, 0.5)
    assert plan.ip_allows(int(soft / 2) - TRADES_WEIGHT, 0, 2400, 0.8, 0.5)
    assert not plan.ip_allows(int(soft / 2) - TRADES_WEIGHT, 1, 2400, 0.8, 0.5)
    assert not plan.ip_allows(int(soft / 2), 0, 2400, 0.8, 0.5)


def test_a_policy_that_could_not_work_is_refused() -> None:
    for bad in (
        {"margin_ms": -1},
        {"every_ms": 0},
        {"every_ms": 10, "backoff_max_ms": 5},
        {"per_pass": 0},
        {"weight_per_minute": TRADES_WEIGHT - 1},
        {"ip_share": 0.0},
        {"ip_share": 1.5},
    ):
        with pytest.raises(ValueError, match="trades"):
            plan.TradesPolicy(**bad)  # type: ignore[arg-type]


# --- the record -----------------------------------------------------------------------------------


def with_trades(explained: bool = True) -> IncidentRecord:
    m = position("0.05")
    rec = opened(m)
    rows = [trade(1, Side.BUY, "0.03", T0 - 20), trade(2, Side.BUY, "0.02", T0 - 10, order=8)]
    diff = Decimal("0.05") if explained else Decimal("0.06")
    verdict = account_for(rows, diff)
    req = plan.TradesRequest(rec.id, "ETHUSDT", PositionSide.BOTH, diff, T0 - 60_000, T0 + 1)
    return core.with_trades(rec, plan.evidence_of(verdict, req, T0 + 2))


def test_the_trades_read_back_from_the_json_form() -> None:
    rec = with_trades()
    assert rec.trades is not None
    assert rec.trades.explained
    text = json.dumps(record_to_json(rec))
    assert record_from_json(json.loads(text), "test") == rec
    out = full_json(rec)["trades"]
    assert out["explained"] is True
    assert out["difference"] == "0.05"
    assert [
        (t["qty"], t["price"], t["commission"], t["commission_asset"], t["order_id"])
        for t in out["trades"]
    ] == [
        ("0.03", "2000.5", "0.04", "USDT", 7),
        ("0.02", "2000.5", "0.04", "USDT", 8),
    ]


def test_a_record_written_before_trades_existed_reads_as_one_without() -> None:
    rec = opened(position("0.05"))
    old = record_to_json(rec)
    del old["trades"]
    back = record_from_json(old, "test")
    assert back == rec
    assert back.trades is None


def test_damaged_trades_are_refused_naming_the_field() -> None:
    obj = record_to_json(with_trades())
    obj["trades"]["trades"][1]["time_ms"] = "soon"
    with pytest.raises(LedgerCorrupt, match=r"trades\[1\]: field 'time_ms'"):
        record_from_json(obj, "ledger X")
    obj = record_to_json(with_trades())
    obj["trades"]["explained"] = "yes"
    with pytest.raises(LedgerCorrupt, match="field 'explained'"):
        record_from_json(obj, "ledger X")


def test_a_cleared_incident_takes_no_trades() -> None:
    rec = core.cleared(opened(position("0.05")), T0 + 5)
    assert core.with_trades(rec, with_trades().trades) is rec  # type: ignore[arg-type]


def test_show_prints_each_trade_and_the_verdict() -> None:
    text = "\n".join(detail(with_trades(), T0 + 10))
    assert "trades:    explained fully: 2 trade(s) make up the difference 0.05" in text
    assert "BUY 0.03 @ 2000.5 fee 0.04 USDT order 7 trade 1" in text
    assert "BUY 0.02 @ 2000.5 fee 0.04 USDT order 8 trade 2" in text
    short = "\n".join(detail(with_trades(explained=False), T0 + 10))
    assert "not explained: 2 trade(s) read sum to 0.05, short by 0.01 of the difference 0.06" in (
        short
    )
    none = "\n".join(detail(opened(position("0.05")), T0 + 10))
    assert "trades:    not fetched" in none
    assert "trades:" not in "\n".join(detail(opened(ORPHAN), T0 + 10))


# --- the fetch ------------------------------------------------------------------------------------


class Venue:
    """A port's ``fetch_user_trades``: the trades it holds, or a failure."""

    def __init__(self, trades: list[AccountTrade]) -> None:
        self.trades = trades
        self.calls: list[tuple[str, int, int]] = []
        self.fail: Exception | None = None
        self.hang: asyncio.Event | None = None

    async def fetch_user_trades(
        self, symbol: str, *, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[AccountTrade]:
        self.calls.append((symbol, start_ms, end_ms))
        if self.hang is not None:
            await self.hang.wait()
        if self.fail is not None:
            raise self.fail
        window = sorted(
            (t for t in self.trades if start_ms <= t.time_ms <= end_ms),
            key=lambda t: (t.time_ms, t.trade_id),
        )
        return window[:limit]  # as the venue answers a startTime: the oldest first


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def ledger_with(m: Mismatch, clock: Clock, writer: list[bool]) -> IncidentLedger:
    ledger = IncidentLedger(
        MemoryIncidentStore(),
        ReconcileConfig(),
        clock=clock,
        metrics=IncidentMetrics(CollectorRegistry()),
        may_write=lambda: writer[0],
    )
    ledger.incidents("run-1", [m], [])
    ledger.run_end("run-1", [m])
    return ledger


def fetches(ledger: IncidentLedger, outcome: str) -> float:
    assert ledger.metrics is not None
    return ledger.metrics.trade_fetches.labels(outcome=outcome)._value.get()


async def test_the_fetch_attaches_the_trades_and_stops_once_they_explain() -> None:
    clock, writer = Clock(), [True]
    m = position("0.05")
    ledger = ledger_with(m, clock, writer)
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    fetcher = TradesFetcher(ledger, venue, clock=clock, may_fetch=lambda: writer[0], policy=POLICY)
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is not None
    assert rec.trades.explained
    assert ledger.store.get(rec.id) == rec  # written at once
    assert fetches(ledger, "explained") == 1
    clock.now += 10 * POLICY.backoff_max_ms
    assert await fetcher.after_run() == 0
    assert len(venue.calls) == 1


async def test_a_failed_fetch_leaves_the_record_and_is_tried_again_after_the_backoff() -> None:
    clock, writer = Clock(), [True]
    m = position("0.05")
    ledger = ledger_with(m, clock, writer)
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    venue.fail = RuntimeError("HTTP 503")
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is None
    assert fetches(ledger, "failed") == 1
    clock.now += 2 * POLICY.every_ms - 1
    assert await fetcher.after_run() == 0
    venue.fail = None
    clock.now += 1
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is not None
    assert rec.trades.explained


async def test_a_follower_never_fetches() -> None:
    clock, writer = Clock(), [False]
    m = position("0.05")
    ledger = ledger_with(m, clock, writer)
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    fetcher = TradesFetcher(ledger, venue, clock=clock, may_fetch=lambda: writer[0], policy=POLICY)
    assert await fetcher.after_run() == 0
    assert venue.calls == []


async def test_an_older_fill_outside_the_window_shows_the_shortfall() -> None:
    clock, writer = Clock(), [True]
    m = position("0.05")
    ledger = ledger_with(m, clock, writer)
    venue = Venue(
        [trade(1, Side.BUY, "0.03", T0 - POLICY.margin_ms - 1), trade(2, Side.BUY, "0.02", T0 - 5)]
    )
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)
    await fetcher.after_run()
    (rec,) = ledger.open_records()
    t = rec.trades
    assert t is not None
    assert not t.explained
    assert [r.trade_id for r in t.trades] == [2]
    assert (t.signed_sum, t.unexplained) == ("0.02", "0.03")


async def test_a_new_leader_does_not_fetch_again_what_the_record_explains() -> None:
    clock, writer = Clock(), [True]
    m = position("0.05")
    ledger = ledger_with(m, clock, writer)
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    first = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)
    assert await first.after_run() == 1
    (rec,) = ledger.open_records()
    assert plan.progress_from(rec) == plan.TradesProgress(T0, 0, Decimal("0.05"), True)
    clock.now += POLICY.backoff_max_ms
    second = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)  # the next process
    assert await second.after_run() == 0
    assert len(venue.calls) == 1
    assert plan.progress_from(opened(m)) == plan.TradesProgress()


async def test_a_fetch_with_no_answer_is_abandoned_at_the_passs_deadline() -> None:
    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    venue.hang = asyncio.Event()  # never set: the venue does not answer
    quick = replace(POLICY, pass_timeout_ms=50)
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=quick)
    assert await asyncio.wait_for(fetcher.after_run(), 30) == 1  # returned: not held up
    (rec,) = ledger.open_records()
    assert rec.trades is None
    assert fetches(ledger, "failed") == 1
    assert fetcher.progress[rec.id].failures == 1


async def test_the_weight_counts_requests_that_left_and_not_those_refused_before() -> None:
    from grinder.exchange.binance.errors import IpBanned
    from grinder.exchange.binance.ip_limits import not_sent

    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    assert ledger.metrics is not None
    weight = ledger.metrics.trade_fetch_weight
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    venue.fail = not_sent(IpBanned("GET /fapi/v1/userTrades: not sent, banned", http_status=418))
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)
    await fetcher.after_run()
    assert weight._value.get() == 0
    venue.fail = RuntimeError("HTTP 503")
    clock.now += POLICY.backoff_max_ms
    await fetcher.after_run()
    assert weight._value.get() == TRADES_WEIGHT
    venue.fail = None
    clock.now += POLICY.backoff_max_ms
    await fetcher.after_run()
    assert weight._value.get() == 2 * TRADES_WEIGHT
    assert fetches(ledger, "failed") == 2
    assert fetches(ledger, "explained") == 1


# --- adversarial: windows of more than one page; the lease lost during a fetch -------------------


def busy_window(extra: int = 0) -> list[AccountTrade]:
    """1,000 fills that net to zero (a bot trading both ways), then the fill that made the
    difference (+0.05), then ``extra`` more of the bot's fills that net to zero."""
    rows = [
        trade(n, Side.BUY if n % 2 == 0 else Side.SELL, "0.01", T0 - 50_000 + n)
        for n in range(1000)
    ]
    rows.append(trade(1000, Side.BUY, "0.05", T0 - 40_000, order=99))
    rows += [
        trade(1001 + n, Side.SELL if n % 2 == 0 else Side.BUY, "0.01", T0 - 30_000 + n)
        for n in range(extra)
    ]
    return rows


async def test_a_window_of_more_than_one_page_is_read_to_its_newest_fill() -> None:
    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    venue = Venue(busy_window(extra=2))
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is not None
    assert rec.trades.explained
    assert [r.trade_id for r in rec.trades.trades] == [1000, 1001, 1002]
    assert len(venue.calls) == 2  # two pages, each one request of weight 5
    assert venue.calls[1][1] == T0 - 50_000 + 999  # the second from the first's last trade
    assert ledger.metrics is not None
    assert ledger.metrics.trade_fetch_weight._value.get() == 2 * TRADES_WEIGHT


async def test_a_window_whose_pages_cannot_all_be_read_now_attaches_nothing() -> None:
    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    venue = Venue(busy_window())
    one_request = replace(POLICY, weight_per_minute=TRADES_WEIGHT)
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=one_request)
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is None  # never a verdict over the oldest page alone
    assert len(venue.calls) == 1
    assert fetches(ledger, "failed") == 1
    assert ledger.metrics is not None
    assert ledger.metrics.trade_fetch_weight._value.get() == TRADES_WEIGHT


async def test_a_full_page_of_one_millisecond_is_an_incomplete_read() -> None:
    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    venue = Venue([trade(n, Side.BUY, "0.01", T0 - 100) for n in range(1001)])
    fetcher = TradesFetcher(ledger, venue, clock=clock, policy=POLICY)
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is None
    assert fetches(ledger, "failed") == 1


async def test_a_fetch_answered_after_the_lease_was_lost_is_fetched_again_when_leading() -> None:
    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    venue.hang = asyncio.Event()
    fetcher = TradesFetcher(ledger, venue, clock=clock, may_fetch=lambda: writer[0], policy=POLICY)
    task = asyncio.create_task(fetcher.after_run())
    while not venue.calls:
        await asyncio.sleep(0)
    writer[0] = False  # the lease ran out while the request was out
    venue.hang.set()
    await task
    (rec,) = ledger.open_records()
    assert rec.trades is None  # a deposed instance writes nothing
    assert await fetcher.after_run() == 0  # a follower never fetches
    writer[0] = True  # leading again: the record has no trades, so they are fetched
    clock.now += POLICY.every_ms
    assert await fetcher.after_run() == 1
    (rec,) = ledger.open_records()
    assert rec.trades is not None
    assert rec.trades.explained


# --- adversarial: a damaged number in a record's trades -----------------------------------------


@pytest.mark.parametrize("value", ["0,05", "abc", "NaN", "-Infinity", 5, None])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ((), "difference"),
        ((), "signed_sum"),
        ((), "unexplained"),
        (("trades", 0), "qty"),
        (("trades", 1), "price"),
        (("trades", 0), "commission"),
    ],
)
def test_a_damaged_number_in_the_trades_is_refused_naming_the_field(
    path: tuple[object, ...], field: str, value: object
) -> None:
    obj = record_to_json(with_trades())
    where = obj["trades"]
    for step in path:
        where = where[step]
    where[field] = value
    with pytest.raises(LedgerCorrupt, match=f"field '{field}' is .*, expected a decimal number"):
        record_from_json(obj, "ledger X")


async def test_a_record_with_a_damaged_difference_never_stops_the_trades_pass(
    tmp_path: Path,
) -> None:
    path = tmp_path / "incidents.db"
    clock, writer = Clock(), [True]
    m = position("0.05")
    venue = Venue([trade(1, Side.BUY, "0.06", T0 - 100)])  # not explained: fetched again later

    def ledger() -> IncidentLedger:
        led = IncidentLedger(
            SqliteIncidentStore(path),
            ReconcileConfig(),
            clock=clock,
            metrics=IncidentMetrics(CollectorRegistry()),
            may_write=lambda: writer[0],
        )
        led.load()
        led.incidents("run-1", [m], [])
        led.run_end("run-1", [m])
        return led

    first = ledger()
    assert await TradesFetcher(first, venue, clock=clock, policy=POLICY).after_run() == 1
    first.close()
    with sqlite3.connect(path) as db:  # another version, or a hand, wrote the record so
        (rid, text) = db.execute("SELECT id, record FROM incidents").fetchone()
        obj = json.loads(text)
        obj["trades"]["difference"] = "0,05"
        db.execute("UPDATE incidents SET record = ? WHERE id = ?", (json.dumps(obj), rid))
    clock.now += POLICY.backoff_max_ms
    second = ledger()
    await TradesFetcher(second, venue, clock=clock, policy=POLICY).after_run()  # never raises
    assert second.metrics is not None
    assert second.metrics.store_errors._value.get() >= 1  # the damaged record: logged, counted


async def test_a_pass_that_meets_an_unreadable_record_logs_it_and_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    (rec,) = ledger.open_records()
    evidence = with_trades(explained=False).trades
    assert evidence is not None
    damaged = replace(evidence, difference="0,05")  # held in memory as read from elsewhere
    ledger._open[rec.key] = core.with_trades(rec, damaged)
    fetcher = TradesFetcher(ledger, Venue([]), clock=clock, policy=POLICY)
    assert await fetcher.after_run() == 0  # returned: the service's loop goes on
    assert fetches(ledger, "failed") == 1
    assert "INCIDENT_TRADES_FAILED" in caplog.text


async def test_no_fetch_goes_out_in_a_429_pause_a_ban_or_past_the_ips_share() -> None:
    """The IP's limits as the REST client keeps them (``IpLimits``): a fetch is withheld, not
    sent, while a 429's pause or a 418's ban holds or while the minute's weight (in flight
    included) is past the trades' share of the soft limit; it goes out once none holds."""
    from grinder.exchange.binance.errors import IpBanned
    from grinder.exchange.binance.ip_limits import IpLimits

    clock, writer = Clock(), [True]
    ledger = ledger_with(position("0.05"), clock, writer)
    limits = IpLimits(
        weight_limit=2400, slow_down_ratio=0.8, clock=clock, server_now_ms=lambda: clock.now
    )
    venue = Venue([trade(1, Side.BUY, "0.05", T0 - 100)])
    fetcher = TradesFetcher(ledger, venue, clock=clock, limits=limits, policy=POLICY)

    limits.pause_until(clock.now + 60_000)  # a 429 said: nothing for 60 s
    assert await fetcher.after_run() == 0
    clock.now += 60_000
    limits.note_ban(IpBanned("banned", http_status=418, retry_after_s=120), 0)
    assert await fetcher.after_run() == 0
    clock.now += 120_000
    limits.note_weight({"X-MBX-USED-WEIGHT-1M": str(int(2400 * 0.8 * POLICY.ip_share))})
    assert await fetcher.after_run() == 0  # the upper part of the minute is not the trades'
    limits.note_weight({"X-MBX-USED-WEIGHT-1M": "0"})
    limits.inflight_weight = int(2400 * 0.8 * POLICY.ip_share)  # requests out, not answered
    assert await fetcher.after_run() == 0
    assert venue.calls == []
    assert fetches(ledger, "withheld") == 4
    limits.inflight_weight = 0
    assert await fetcher.after_run() == 1
    assert len(venue.calls) == 1
    assert fetches(ledger, "explained") == 1
