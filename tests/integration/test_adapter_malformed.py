"""Responses the parsers reject, from a real HTTP server, through the futures port.

Binance answered (HTTP 200) with a body this client cannot read. That is an
``ExchangeError`` naming the endpoint and the field, so the callers that handle
exchange failures (triage, the executor, the service loop) handle it too; for
the new order of a flatten it also says the outcome is unknown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.errors import MalformedResponse, MalformedWriteResponse
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.port import ExchangeError
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.identity import generate_client_order_id
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import ExpectedOrder, PositionSide, Side
from grinder.state.expected import MemoryExpectedStore
from grinder.state.observed import ObservedStore

CID = generate_client_order_id(
    strategy_id="d", symbol="BTCUSDT", level_id=1, ts_seconds=1_800_000_000, seq=1
)
# A query-order body whose quantity is a JSON number, not the string Binance sends.
BAD_ORDER = {
    "orderId": 1,
    "clientOrderId": CID,
    "symbol": "BTCUSDT",
    "status": "NEW",
    "side": "BUY",
    "type": "LIMIT",
    "origQty": 0.5,
    "executedQty": "0",
    "price": "100",
    "updateTime": 1,
}
BODIES: dict[tuple[str, str], Any] = {
    ("GET", "/fapi/v1/order"): BAD_ORDER,
    ("POST", "/fapi/v1/order"): {"orderId": 2, "clientOrderId": CID},
    ("GET", "/fapi/v1/openOrders"): [{"symbol": "BTCUSDT"}],
    ("GET", "/fapi/v1/openAlgoOrders"): [],
    ("GET", "/fapi/v3/positionRisk"): {"positions": []},
    ("GET", "/fapi/v1/positionSide/dual"): {"dualSidePosition": "yes"},
    ("GET", "/fapi/v1/time"): {"serverTime": "soon"},
    ("GET", "/fapi/v1/exchangeInfo"): {"symbols": "none"},
}


@pytest.fixture
async def port() -> AsyncIterator[BinanceFuturesPort]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(BODIES[(request.method, request.path)])

    app = web.Application()
    for method, path in BODIES:
        app.router.add_route(method, path, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
    host, bound = sockets[0].getsockname()[:2]
    rest = BinanceRestClient(f"http://{host}:{bound}", Credentials("k", "s"))
    try:
        yield BinanceFuturesPort(rest)
    finally:
        await rest.close()
        await runner.cleanup()


async def test_a_malformed_read_is_an_exchange_error_naming_endpoint_and_field(
    port: BinanceFuturesPort,
) -> None:
    with pytest.raises(MalformedResponse) as err:
        await port.query_order("BTCUSDT", CID)
    assert isinstance(err.value, ExchangeError)
    assert not err.value.outcome_unknown
    text = str(err.value)
    assert "GET /fapi/v1/order" in text
    assert "origQty" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("call", "where"),
    [
        ("fetch_open_orders", "GET /fapi/v1/openOrders"),
        ("fetch_positions", "GET /fapi/v3/positionRisk"),
        ("hedge_mode", "GET /fapi/v1/positionSide/dual"),
        ("exchange_info", "GET /fapi/v1/exchangeInfo"),
        ("sync_time", "GET /fapi/v1/time"),
    ],
)
async def test_every_read_reports_a_malformed_body_as_such(
    port: BinanceFuturesPort, call: str, where: str
) -> None:
    target = port.rest if call == "sync_time" else port
    with pytest.raises(MalformedResponse) as err:
        await getattr(target, call)()
    assert where in str(err.value)


async def test_a_malformed_answer_to_a_new_order_says_its_outcome_is_unknown(
    port: BinanceFuturesPort,
) -> None:
    with pytest.raises(MalformedWriteResponse) as err:
        await port.place_reduce_only_market(
            "BTCUSDT",
            Side.SELL,
            Decimal("0.002"),
            position_side=PositionSide.BOTH,
            client_order_id=CID,
        )
    assert err.value.outcome_unknown
    assert CID in str(err.value)


async def test_triage_counts_a_malformed_answer_as_an_error_and_the_run_goes_on(
    port: BinanceFuturesPort,
) -> None:
    expected = MemoryExpectedStore()
    expected.record_order(
        ExpectedOrder(
            client_order_id=CID,
            symbol="BTCUSDT",
            side=Side.BUY,
            qty=Decimal("1"),
            price=Decimal("100"),
            created_ts_ms=0,
            updated_ts_ms=0,
        )
    )
    engine = ReconcileEngine(ReconcileConfig(), expected, ObservedStore())
    result = await engine.reconcile(60_000, port)
    assert result.triage[TriageOutcome.ERROR] == 1
    assert result.mismatches == []
