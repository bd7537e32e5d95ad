"""The trades behind a position incident, fetched from the simulator (a real HTTP server) over
the real REST client and port:

* a window of more than one page of fills: ``userTrades`` asked with ``startTime`` answers
  the oldest 1,000 first, as the venue does; the fetch reads the window page after page and
  the record is explained by the newest fill, never by a run of the oldest page;
* hedge mode: a SHORT position's difference is negative (a sell opens it, a buy closes
  it), and only the fills of that position side explain it, not the LONG side's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from grinder.clock import wall_clock_ms
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.sink import IncidentLedger
from grinder.incidents.store import MemoryIncidentStore
from grinder.incidents.trades import TradesFetcher
from grinder.incidents.trades_plan import TradesPolicy
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.types import Mismatch, MismatchType, PositionSide
from grinder.service.venue import credentials_for

TRADES = "GET /fapi/v1/userTrades"
BOT_FILLS = 1000


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=["ETHUSDT"])
    await server.start()
    yield server
    await server.stop()


async def test_a_window_of_more_than_a_page_is_explained_by_its_newest_fill(
    sim: SimulatorServer,
) -> None:
    async with SimControl(sim.base_url) as ctl:
        for n in range(BOT_FILLS):  # the bot trading both ways: nets to zero
            qty = "0.01" if n % 2 == 0 else "-0.01"
            await ctl.call("POST", "/positions", {"symbol": "ETHUSDT", "quantity": qty})
        await ctl.call(
            "POST", "/positions", {"symbol": "ETHUSDT", "quantity": "0.05", "clientOrderId": "web1"}
        )
    fills = [t for t in sim.exchange.account.ledger.trades if t.symbol == "ETHUSDT"]
    assert len(fills) == BOT_FILLS + 1
    manual = fills[-1].view()

    ledger = IncidentLedger(
        MemoryIncidentStore(),
        ReconcileConfig(),
        clock=wall_clock_ms,
        metrics=IncidentMetrics(CollectorRegistry()),
    )
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol="ETHUSDT",
        position_side=PositionSide.BOTH,
        expected_qty=Decimal(0),
        observed_qty=Decimal("0.05"),
    )
    ledger.incidents("run-1", [m], [])
    ledger.run_end("run-1", [m])
    rest = BinanceRestClient(sim.base_url, credentials_for("sim"))
    try:
        fetcher = TradesFetcher(
            ledger,
            BinanceFuturesPort(rest),
            clock=wall_clock_ms,
            limits=rest.limits,
            policy=TradesPolicy(pass_timeout_ms=60_000),
        )
        assert await fetcher.after_run() == 1
    finally:
        await rest.close()
    (rec,) = ledger.open_records()
    assert rec.trades is not None
    assert rec.trades.explained, rec.trades
    assert [r.trade_id for r in rec.trades.trades] == [manual["id"]]
    assert sim.exchange.requests.get(TRADES) == 2  # two pages, one request each


def position_incident(qty: str, side: PositionSide) -> tuple[IncidentLedger, Mismatch]:
    ledger = IncidentLedger(
        MemoryIncidentStore(),
        ReconcileConfig(),
        clock=wall_clock_ms,
        metrics=IncidentMetrics(CollectorRegistry()),
    )
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol="ETHUSDT",
        position_side=side,
        expected_qty=Decimal(0),
        observed_qty=Decimal(qty),
    )
    ledger.incidents("run-1", [m], [])
    ledger.run_end("run-1", [m])
    return ledger, m


async def test_in_hedge_mode_a_short_is_explained_by_its_own_sides_fills(
    sim: SimulatorServer,
) -> None:
    async with SimControl(sim.base_url) as ctl:
        await ctl.call("POST", "/position-mode", {"dualSidePosition": True})
        for qty, side in (("-0.05", "SHORT"), ("0.03", "LONG"), ("0.02", "SHORT")):
            body = {"symbol": "ETHUSDT", "quantity": qty, "positionSide": side}
            await ctl.call("POST", "/positions", body)
    views = [t.view() for t in sim.exchange.account.ledger.trades]
    assert [(v["side"], v["positionSide"]) for v in views] == [
        ("SELL", "SHORT"),
        ("BUY", "LONG"),
        ("BUY", "SHORT"),
    ]
    rest = BinanceRestClient(sim.base_url, credentials_for("sim"))
    try:
        port = BinanceFuturesPort(rest)
        found = {}
        for qty, side in (("-0.03", PositionSide.SHORT), ("0.03", PositionSide.LONG)):
            ledger, _ = position_incident(qty, side)
            fetcher = TradesFetcher(ledger, port, clock=wall_clock_ms, limits=rest.limits)
            assert await fetcher.after_run() == 1
            (rec,) = ledger.open_records()
            assert rec.trades is not None
            found[side] = rec.trades
    finally:
        await rest.close()
    short, long_ = found[PositionSide.SHORT], found[PositionSide.LONG]
    assert (short.difference, short.explained, short.signed_sum) == ("-0.03", True, "-0.03")
    assert [r.trade_id for r in short.trades] == [views[0]["id"], views[2]["id"]]
    assert {r.position_side for r in short.trades} == {"SHORT"}
    assert (long_.difference, long_.explained) == ("0.03", True)
    assert [r.trade_id for r in long_.trades] == [views[1]["id"]]
