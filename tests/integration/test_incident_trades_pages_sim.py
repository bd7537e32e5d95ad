"""The trades behind a position incident when its window holds more than one page of fills:
the simulator (a real HTTP server) answers ``userTrades`` with ``startTime`` as the venue
does, the oldest 1,000 first; the fetch reads the window page after page, over the real
REST client and port, and the record is explained by the newest fill, never by a run of
the oldest page."""

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
