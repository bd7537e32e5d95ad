"""The simulator's market-data, account, batch, amendment and countdown endpoints over real
loopback HTTP: their JSON shapes against the wire corpus (real captures first) and, where the
corpus has none, against the example of the endpoint's page in the Binance USDⓈ-M docs
(written out below, `//` comments dropped); their request weights; their errors; and the
write log of every new write. The clock is a ``ManualClock`` set to the wall clock, so one
test's weights all fall in one minute and timers move only when told.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from grinder.exchange.simulator import SimConfig, SimulatorServer
from grinder.exchange.simulator.clock import ManualClock
from tests.support.binance_client import BinanceFutures, Reply, UserStream
from tests.support.wait import wait_until_async

ShapeDiff = Callable[..., list[str]]

# Examples of the docs pages (developers.binance.com/docs/derivatives/usds-margined-futures/…).
DOCS: dict[str, Any] = {
    "leverageBracket": {
        "symbol": "ETHUSDT",
        "notionalCoef": 1.50,
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": 75,
                "notionalCap": 10000,
                "notionalFloor": 0,
                "maintMarginRatio": 0.0065,
                "cum": 0.0,
            }
        ],
    },
    "commissionRate": {
        "symbol": "BTCUSDT",
        "makerCommissionRate": "0.0002",
        "takerCommissionRate": "0.0004",
    },
    "income": [
        {
            "symbol": "BTCUSDT",
            "incomeType": "COMMISSION",
            "income": "-0.01000000",
            "asset": "USDT",
            "info": "COMMISSION",
            "time": 1570636800000,
            "tranId": 9689322392,
            "tradeId": "2059192",
        }
    ],
    "balance": [
        {
            "accountAlias": "SgsR",
            "asset": "USDT",
            "balance": "122607.35137903",
            "crossWalletBalance": "23.72469206",
            "crossUnPnl": "0.00000000",
            "availableBalance": "23.72469206",
            "maxWithdrawAmount": "23.72469206",
            "marginAvailable": True,
            "updateTime": 1617939110373,
        }
    ],
    "accountConfig": {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "dualSidePosition": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
    },
    "adlQuantile": [{"symbol": "BTCUSDT", "adlQuantile": {"LONG": 1, "SHORT": 2, "BOTH": 0}}],
    "leverage": {"leverage": 21, "maxNotionalValue": "1000000", "symbol": "BTCUSDT"},
    "success": {"code": 200, "msg": "success"},
    "multiAssetsMargin": {"multiAssetsMargin": True},
    "countdownCancelAll": {"symbol": "BTCUSDT", "countdownTime": "100000"},
    "depth": {
        "lastUpdateId": 1027024,
        "E": 1589436922972,
        "T": 1589436922959,
        "bids": [["4.00000000", "431.00000000"]],
        "asks": [["4.00000200", "12.00000000"]],
    },
    "bookTicker": {
        "lastUpdateId": 1027024,
        "symbol": "BTCUSDT",
        "bidPrice": "4.00000000",
        "bidQty": "431.00000000",
        "askPrice": "4.00000200",
        "askQty": "9.00000000",
        "time": 1589437530011,
    },
    "tickerPriceV2": {"symbol": "BTCUSDT", "price": "6000.01", "time": 1589437530011},
    "ticker24hr": {
        "symbol": "BTCUSDT",
        "priceChange": "-94.99999800",
        "priceChangePercent": "-95.960",
        "weightedAvgPrice": "0.29628482",
        "lastPrice": "4.00000200",
        "lastQty": "200.00000000",
        "openPrice": "99.00000000",
        "highPrice": "100.00000000",
        "lowPrice": "0.10000000",
        "volume": "8913.30000000",
        "quoteVolume": "15.30000000",
        "openTime": 1499783499040,
        "closeTime": 1499869899040,
        "firstId": 28385,
        "lastId": 28460,
        "count": 76,
    },
    "klines": [
        [
            1499040000000,
            "0.01634790",
            "0.80000000",
            "0.01575800",
            "0.01577100",
            "148976.11427815",
            1499644799999,
            "2434.19055334",
            308,
            "1756.87402397",
            "28.46694368",
            "17928899.62484339",
        ]
    ],
    "fundingRate": [
        {
            "symbol": "BTCUSDT",
            "fundingRate": "-0.03750000",
            "fundingTime": 1570608000000,
            "markPrice": "34287.54619963",
        }
    ],
}


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    config = SimConfig(walk_frozen=True, symbols=["BTCUSDT", "ETHUSDT"])
    clock = ManualClock(int(time.time() * 1000))
    async with SimulatorServer(port=0, config=config, clock=clock, background=False) as server:
        yield server
        assert server.exchange.internal_errors == 0, "a request hit the catch-all 500"


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[BinanceFutures]:
    clock = sim.exchange.clock
    async with aiohttp.ClientSession() as session:
        yield BinanceFutures(session, sim.base_url, sim.api_key, sim.api_secret, clock=clock.now_ms)


def manual(sim: SimulatorServer) -> ManualClock:
    clock = sim.exchange.clock
    assert isinstance(clock, ManualClock)
    return clock


async def order(c: BinanceFutures, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"}
    base.update(params)
    if base["type"] == "LIMIT":
        base.setdefault("timeInForce", "GTC")
    result: dict[str, Any] = await c.ok("POST", "/fapi/v1/order", **base)
    return result


def weight_of(before: Reply, after: Reply) -> int:
    return after.used_weight - before.used_weight


# --- shapes ------------------------------------------------------------------------------------


async def test_market_data_shapes(
    sim: SimulatorServer, client: BinanceFutures, shape_diff: ShapeDiff
) -> None:
    sim.exchange.heartbeat(walk=False)
    depth = (await client.public("/fapi/v1/depth", symbol="BTCUSDT", limit=5)).data
    assert shape_diff(depth, DOCS["depth"]) == []
    book = (await client.public("/fapi/v1/ticker/bookTicker", symbol="BTCUSDT")).data
    assert shape_diff(book, DOCS["bookTicker"]) == []
    every = (await client.public("/fapi/v1/ticker/bookTicker")).data
    assert [b["symbol"] for b in every] == ["BTCUSDT", "ETHUSDT"]
    price = (await client.public("/fapi/v2/ticker/price", symbol="BTCUSDT")).data
    assert shape_diff(price, DOCS["tickerPriceV2"]) == []
    day = (await client.public("/fapi/v1/ticker/24hr", symbol="BTCUSDT")).data
    assert shape_diff(day, DOCS["ticker24hr"]) == []
    assert (day["lastPrice"], day["count"], day["firstId"]) == ("65000.00", 0, -1)
    await order(client, type="MARKET", quantity="0.010")
    day = (await client.public("/fapi/v1/ticker/24hr", symbol="BTCUSDT")).data
    assert (day["volume"], day["count"], day["lastQty"]) == ("0.010", 1, "0.010")
    klines = (await client.public("/fapi/v1/klines", symbol="BTCUSDT", interval="1m")).data
    assert shape_diff(klines, DOCS["klines"]) == []
    assert [type(v).__name__ for v in klines[0]] == [type(v).__name__ for v in DOCS["klines"][0]]


async def test_funding_rate_shape_after_a_settlement(
    sim: SimulatorServer, client: BinanceFutures, shape_diff: ShapeDiff
) -> None:
    assert (await client.public("/fapi/v1/fundingRate")).data == []
    manual(sim).advance(8 * 60 * 60 * 1000)
    sim.exchange.heartbeat(walk=False)
    client.clock = manual(sim).now_ms
    rates = (await client.public("/fapi/v1/fundingRate", symbol="BTCUSDT")).data
    assert len(rates) == 1
    assert shape_diff(rates, DOCS["fundingRate"]) == []


async def test_account_endpoint_shapes(
    client: BinanceFutures, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    brackets = await client.ok("GET", "/fapi/v1/leverageBracket", symbol="BTCUSDT")
    assert (
        shape_diff(brackets, DOCS["leverageBracket"], absent_ok=frozenset({"notionalCoef"})) == []
    )
    fees = await client.ok("GET", "/fapi/v1/commissionRate", symbol="BTCUSDT")
    extra = frozenset({"rpiCommissionRate"})
    assert shape_diff(fees, DOCS["commissionRate"], extra_ok=extra) == []
    for path in ("/fapi/v2/balance", "/fapi/v3/balance"):
        assert shape_diff(await client.ok("GET", path), DOCS["balance"]) == []
    config = await client.ok("GET", "/fapi/v1/accountConfig")
    assert shape_diff(config, DOCS["accountConfig"]) == []
    symbols = await client.ok("GET", "/fapi/v1/symbolConfig", symbol="BTCUSDT")
    assert shape_diff(symbols, corpus("ccxt_fapi_v1_symbolConfig.json")) == []
    assert len(await client.ok("GET", "/fapi/v1/symbolConfig")) == 2
    multi = await client.ok("GET", "/fapi/v1/multiAssetsMargin")
    assert shape_diff(multi, DOCS["multiAssetsMargin"]) == []
    await order(client, type="MARKET", quantity="0.010")
    adl = await client.ok("GET", "/fapi/v1/adlQuantile")
    assert adl == [{"symbol": "BTCUSDT", "adlQuantile": {"LONG": 1, "SHORT": 0, "BOTH": 1}}]
    assert shape_diff(adl, DOCS["adlQuantile"]) == []
    assert await client.ok("GET", "/fapi/v1/forceOrders", symbol="BTCUSDT") == []


async def test_history_shapes(
    client: BinanceFutures, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    await order(client, type="MARKET", quantity="0.010")
    await order(client, side="SELL", type="MARKET", quantity="0.010")
    trades = await client.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
    assert len(trades) == 2
    assert shape_diff(trades, corpus("nautilus_http_futures_account_trades.json")) == []
    quoted = frozenset({"id", "orderId", "time"})  # ccxt's capture quotes integers
    assert shape_diff(trades, corpus("ccxt_fapi_v1_userTrades.json"), loose_types=quoted) == []
    income = await client.ok("GET", "/fapi/v1/income")
    assert [i["incomeType"] for i in income] == ["TRANSFER", "COMMISSION", "COMMISSION"]
    assert shape_diff(income, DOCS["income"]) == []
    orders = await client.ok("GET", "/fapi/v1/allOrders", symbol="BTCUSDT")
    newer = frozenset({"priceMatch", "selfTradePreventionMode", "goodTillDate"})
    real = corpus("reallog_2023_GET_fapi_v1_allOrders_hedge.json")
    assert shape_diff(orders, real, extra_ok=newer) == []
    assert [o["status"] for o in orders] == ["FILLED", "FILLED"]


async def test_settings_shapes_and_their_stream_events(
    sim: SimulatorServer,
    client: BinanceFutures,
    corpus: Callable[[str], Any],
    shape_diff: ShapeDiff,
) -> None:
    stream = await UserStream.open(client, sim.ws_base_url)
    try:
        leverage = await client.ok("POST", "/fapi/v1/leverage", symbol="BTCUSDT", leverage=21)
        assert leverage == {"leverage": 21, "maxNotionalValue": "70000000", "symbol": "BTCUSDT"}
        assert shape_diff(leverage, DOCS["leverage"]) == []
        margin = await client.ok(
            "POST", "/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED"
        )
        assert margin == DOCS["success"]
        multi = await client.ok("POST", "/fapi/v1/multiAssetsMargin", multiAssetsMargin=False)
        assert multi == DOCS["success"]
        updates = await wait_until_async(
            lambda: (
                len(stream.of("ACCOUNT_CONFIG_UPDATE")) == 2 and stream.of("ACCOUNT_CONFIG_UPDATE")
            ),
            "two ACCOUNT_CONFIG_UPDATE events",
        )
        assert shape_diff(updates[0], corpus("docs_ACCOUNT_CONFIG_UPDATE_leverage.json")) == []
        assert updates[0]["ac"] == {"s": "BTCUSDT", "l": 21}
        assert shape_diff(updates[1], corpus("docs_ACCOUNT_CONFIG_UPDATE_multiassets.json")) == []
    finally:
        await stream.close()


async def test_batch_and_amendment_shapes(
    sim: SimulatorServer,
    client: BinanceFutures,
    corpus: Callable[[str], Any],
    shape_diff: ShapeDiff,
) -> None:
    stream = await UserStream.open(client, sim.ws_base_url)
    try:
        placed = await client.ok("POST", "/fapi/v1/batchOrders", batchOrders=[
            {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "0.200", "price": "70000", "newClientOrderId": "b-1"},
            {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.010",
             "reduceOnly": True},
        ])  # fmt: skip
        trailing = frozenset({"activatePrice", "priceRate"})
        docs = corpus("docs_POST_fapi_v1_batchOrders.json")  # the example has no closePosition
        extra = frozenset({"closePosition"})
        assert shape_diff(placed, docs, absent_ok=trailing, extra_ok=extra) == []
        assert shape_diff(placed, corpus("ccxt_fapi_v1_batchOrders.json")) == []
        assert placed[1] == {"code": -2022, "msg": "ReduceOnly Order is rejected."}
        amended = await client.ok(
            "PUT", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="b-1", side="SELL",
            quantity="0.010", price="70100",
        )  # fmt: skip
        assert shape_diff(amended, corpus("jqcta_PUT_fapi_v1_order_modify_2023.json")) == []
        event = await wait_until_async(
            lambda: [e for e in stream.of("ORDER_TRADE_UPDATE") if e["o"]["x"] == "AMENDMENT"],
            "the AMENDMENT event",
        )
        newer = frozenset({"er"})
        assert shape_diff(event[0], corpus("jqcta_ws_ORDER_TRADE_UPDATE_2023_amendment.json"),
                          extra_ok=newer) == []  # fmt: skip
        modified = await client.ok("PUT", "/fapi/v1/batchOrders", batchOrders=[
            {"symbol": "BTCUSDT", "origClientOrderId": "b-1", "side": "SELL",
             "quantity": "0.010", "price": "70200"},
            {"symbol": "BTCUSDT", "orderId": 1, "side": "SELL", "quantity": "0.010",
             "price": "70200"},
        ])  # fmt: skip
        assert modified[0]["price"] == "70200.00"
        assert modified[1] == {"code": -2013, "msg": "Order does not exist."}
        canceled = await client.ok(
            "DELETE", "/fapi/v1/batchOrders", symbol="BTCUSDT",
            orderIdList=[placed[0]["orderId"], placed[0]["orderId"]],
        )  # fmt: skip
        docs_cancel = corpus("docs_DELETE_fapi_v1_order.json")  # the docs example lacks avgPrice
        real_cancel = corpus("reallog_2024_DELETE_fapi_v1_order_LIMIT.json")
        avg = frozenset({"avgPrice"})
        assert shape_diff(canceled[0], docs_cancel, absent_ok=trailing, extra_ok=avg) == []
        assert shape_diff(canceled[0], real_cancel) == []
        assert canceled[1] == {"code": -2011, "msg": "Unknown order sent."}
    finally:
        await stream.close()


# --- weights, order counts, errors ----------------------------------------------------------------

WEIGHTS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 5}, 2),
    ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 100}, 5),
    ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT"}, 10),
    ("GET", "/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 1000}, 20),
    ("GET", "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 99}, 1),
    ("GET", "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 499}, 2),
    ("GET", "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m"}, 5),
    ("GET", "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1000}, 5),
    ("GET", "/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1500}, 10),
    ("GET", "/fapi/v1/ticker/bookTicker", {"symbol": "BTCUSDT"}, 2),
    ("GET", "/fapi/v1/ticker/bookTicker", {}, 5),
    ("GET", "/fapi/v2/ticker/price", {}, 2),
    ("GET", "/fapi/v1/ticker/24hr", {"symbol": "BTCUSDT"}, 1),
    ("GET", "/fapi/v1/ticker/24hr", {}, 40),
    ("GET", "/fapi/v1/fundingRate", {}, 1),
    ("GET", "/fapi/v2/balance", {}, 5),
    ("GET", "/fapi/v3/balance", {}, 5),
    ("GET", "/fapi/v1/leverageBracket", {}, 1),
    ("GET", "/fapi/v1/commissionRate", {"symbol": "BTCUSDT"}, 20),
    ("GET", "/fapi/v1/income", {}, 30),
    ("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"}, 5),
    ("GET", "/fapi/v1/allOrders", {"symbol": "BTCUSDT"}, 5),
    ("GET", "/fapi/v1/allAlgoOrders", {"symbol": "BTCUSDT"}, 5),
    ("GET", "/fapi/v1/forceOrders", {"symbol": "BTCUSDT"}, 20),
    ("GET", "/fapi/v1/forceOrders", {}, 50),
    ("GET", "/fapi/v1/adlQuantile", {}, 5),
    ("GET", "/fapi/v1/multiAssetsMargin", {}, 30),
    ("GET", "/fapi/v1/symbolConfig", {}, 5),
    ("GET", "/fapi/v1/accountConfig", {}, 5),
    ("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 10}, 1),
    ("POST", "/fapi/v1/countdownCancelAll", {"symbol": "BTCUSDT", "countdownTime": 0}, 10),
    ("DELETE", "/fapi/v1/batchOrders", {"symbol": "BTCUSDT", "orderIdList": [1]}, 1),
]


async def test_request_weights_are_the_documented_ones(client: BinanceFutures) -> None:
    for method, path, params, weight in WEIGHTS:
        before = await client.request("GET", "/fapi/v1/time", signed=False)
        signed = path not in ("/fapi/v1/depth", "/fapi/v1/klines", "/fapi/v1/fundingRate") and (
            "ticker" not in path
        )
        reply = await client.request(method, path, params, signed=signed)
        assert reply.status == 200, (path, reply.data)
        assert weight_of(before, reply) == weight, (method, path, params)


async def test_amendments_and_batches_count_on_the_orders_limits(client: BinanceFutures) -> None:
    first = await client.post(
        "/fapi/v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
        quantity="0.010", price="60000",
    )  # fmt: skip
    assert (first.headers["X-MBX-ORDER-COUNT-10S"], first.headers["X-MBX-ORDER-COUNT-1M"]) == (
        "1",
        "1",
    )
    amended = await client.put(
        "/fapi/v1/order", symbol="BTCUSDT", orderId=first.data["orderId"], side="BUY",
        quantity="0.010", price="60100",
    )  # fmt: skip
    assert amended.headers["X-MBX-ORDER-COUNT-10S"] == "2"
    assert weight_of(first, amended) == 0, "an amendment weighs 0 on the IP limit"
    batch = await client.post("/fapi/v1/batchOrders", batchOrders=[
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.010", "price": "60000"},
    ])  # fmt: skip
    assert (batch.headers["X-MBX-ORDER-COUNT-10S"], batch.headers["X-MBX-ORDER-COUNT-1M"]) == (
        "7",
        "3",
    )
    assert weight_of(amended, batch) == 5


@pytest.mark.parametrize(
    ("method", "path", "params", "code"),
    [
        ("POST", "/fapi/v1/batchOrders", {"batchOrders": "not json"}, -1130),
        ("POST", "/fapi/v1/batchOrders", {"batchOrders": [{}] * 6}, -1130),
        ("POST", "/fapi/v1/batchOrders", {}, -1102),
        (
            "DELETE",
            "/fapi/v1/batchOrders",
            {"symbol": "BTCUSDT", "orderIdList": [1], "origClientOrderIdList": ["a"]},
            -1128,
        ),
        ("DELETE", "/fapi/v1/batchOrders", {"symbol": "BTCUSDT"}, -1102),
        ("DELETE", "/fapi/v1/batchOrders", {"symbol": "BTCUSDT", "orderIdList": [1] * 11}, -1130),
        (
            "PUT",
            "/fapi/v1/order",
            {"symbol": "BTCUSDT", "orderId": 1, "side": "BUY", "quantity": "1", "price": "1"},
            -2013,
        ),
        ("POST", "/fapi/v1/countdownCancelAll", {"symbol": "BTCUSDT"}, -1102),
        ("POST", "/fapi/v1/countdownCancelAll", {"symbol": "NOPE", "countdownTime": 1}, -1121),
        ("POST", "/fapi/v1/countdownCancelAll", {"symbol": "BTCUSDT", "countdownTime": -1}, -1100),
        ("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 0}, -4028),
        ("POST", "/fapi/v1/marginType", {"symbol": "BTCUSDT", "marginType": "CROSSED"}, -4046),
        ("POST", "/fapi/v1/marginType", {"symbol": "BTCUSDT", "marginType": "cross"}, -1130),
        ("GET", "/fapi/v1/userTrades", {}, -1102),
        ("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT", "fromId": 1, "startTime": 1}, -1128),
        (
            "GET",
            "/fapi/v1/userTrades",
            {"symbol": "BTCUSDT", "startTime": 0, "endTime": 7 * 86_400_000 + 1},
            -1127,
        ),
        ("GET", "/fapi/v1/income", {"startTime": 2, "endTime": 1}, -1023),
        ("GET", "/fapi/v1/income", {"limit": 1001}, -1130),
        ("GET", "/fapi/v1/commissionRate", {}, -1102),
    ],
)
async def test_bad_requests_get_the_venues_errors(
    client: BinanceFutures, method: str, path: str, params: dict[str, Any], code: int
) -> None:
    reply = await client.request(method, path, params, signed=True)
    assert reply.status == 400
    assert reply.code == code, reply.data


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/fapi/v1/klines", {"symbol": "BTCUSDT", "interval": "2m"}, -1120),
        ("/fapi/v1/klines", {"symbol": "BTCUSDT"}, -1102),
        ("/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 7}, -1130),
        ("/fapi/v1/depth", {}, -1102),
        ("/fapi/v1/ticker/bookTicker", {"symbol": "NOPE"}, -1121),
    ],
)
async def test_bad_market_data_requests(
    client: BinanceFutures, path: str, params: dict[str, Any], code: int
) -> None:
    reply = await client.public(path, **params)
    assert (reply.status, reply.code) == (400, code), reply.data


async def test_every_new_write_is_in_the_write_log_with_its_key(
    sim: SimulatorServer, client: BinanceFutures
) -> None:
    writes = [
        ("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 5}),
        ("POST", "/fapi/v1/marginType", {"symbol": "BTCUSDT", "marginType": "ISOLATED"}),
        ("POST", "/fapi/v1/multiAssetsMargin", {"multiAssetsMargin": False}),
        ("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": True}),
        ("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": False}),
        ("POST", "/fapi/v1/countdownCancelAll", {"symbol": "BTCUSDT", "countdownTime": 0}),
        ("POST", "/fapi/v1/batchOrders", {"batchOrders": [{"symbol": "BTCUSDT"}]}),
        ("PUT", "/fapi/v1/batchOrders", {"batchOrders": [{"symbol": "BTCUSDT"}]}),
        ("DELETE", "/fapi/v1/batchOrders", {"symbol": "BTCUSDT", "orderIdList": [1]}),
        ("PUT", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "x", "side": "BUY"}),
    ]
    for method, path, params in writes:
        await client.request(method, path, params, signed=True)
    log = sim.exchange.write_log.dump(sim.api_key)
    assert [(w["method"], w["path"]) for w in log] == [(m, p) for m, p, _ in writes]
    assert [w["status"] for w in log][-1] == 400
    assert log[-1]["clientOrderId"] == "x"
    assert sim.exchange.write_requests == len(writes)


async def test_a_countdown_over_http_cancels_with_events_when_its_time_is_up(
    sim: SimulatorServer, client: BinanceFutures
) -> None:
    stream = await UserStream.open(client, sim.ws_base_url)
    try:
        placed = await order(client, quantity="0.010", price="60000", newClientOrderId="cd-1")
        armed = await client.ok(
            "POST", "/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=120_000
        )
        assert armed == {"symbol": "BTCUSDT", "countdownTime": "120000"}
        assert json.dumps(armed) == json.dumps(DOCS["countdownCancelAll"]).replace(
            "100000", "120000"
        )
        manual(sim).advance(119_999)
        sim.exchange.heartbeat(walk=False)
        still = await client.ok(
            "GET", "/fapi/v1/openOrder", symbol="BTCUSDT", orderId=placed["orderId"]
        )
        assert still["status"] == "NEW"
        manual(sim).advance(1)
        sim.exchange.heartbeat(walk=False)
        event = await wait_until_async(
            lambda: [o for o in stream.order_updates("CANCELED") if o["c"] == "cd-1"],
            "the countdown's CANCELED event",
        )
        assert event[0]["X"] == "CANCELED"
        gone = await client.get("/fapi/v1/openOrder", symbol="BTCUSDT", orderId=placed["orderId"])
        assert gone.code == -2013
        state = sim.exchange.dump()["countdowns"]
        assert state["timers"] == []
        assert state["firings"][0]["canceled"] == 1
        assert state["firings"][0]["firedMs"] == state["firings"][0]["deadlineMs"]
    finally:
        await stream.close()


async def test_position_mode_and_margin_type_refuse_while_a_conditional_order_is_open(
    client: BinanceFutures,
) -> None:
    algo = await client.ok(
        "POST", "/fapi/v1/algoOrder", algoType="CONDITIONAL", symbol="BTCUSDT", side="BUY",
        type="STOP_MARKET", quantity="0.010", triggerPrice="70000",
    )  # fmt: skip
    mode = await client.post("/fapi/v1/positionSide/dual", dualSidePosition=True)
    assert mode.code == -4067
    margin = await client.post("/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED")
    assert margin.code == -4047
    await client.ok("DELETE", "/fapi/v1/algoOrder", algoId=algo["algoId"])
    await client.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition=True)


async def test_history_queries_page_and_start_where_asked(client: BinanceFutures) -> None:
    for _ in range(3):
        await order(client, type="MARKET", quantity="0.010")
    trades = await client.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
    ids = [t["id"] for t in trades]
    assert len(ids) == 3
    assert ids == sorted(ids)
    later = await client.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", fromId=ids[1])
    assert [t["id"] for t in later] == ids[1:]
    newest = await client.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT", limit=1)
    assert [t["id"] for t in newest] == ids[-1:]
    one = await client.ok(
        "GET", "/fapi/v1/userTrades", symbol="BTCUSDT", orderId=trades[0]["orderId"]
    )
    assert [t["id"] for t in one] == ids[:1]
    orders = await client.ok("GET", "/fapi/v1/allOrders", symbol="BTCUSDT")
    from_second = await client.ok(
        "GET", "/fapi/v1/allOrders", symbol="BTCUSDT", orderId=orders[1]["orderId"]
    )
    assert [o["orderId"] for o in from_second] == [o["orderId"] for o in orders[1:]]
    fees = await client.ok("GET", "/fapi/v1/income", incomeType="COMMISSION")
    assert len(fees) == 3
    second_page = await client.ok(
        "GET", "/fapi/v1/income", incomeType="COMMISSION", limit=2, page=2
    )
    assert second_page == fees[:1]
    first_page = await client.ok("GET", "/fapi/v1/income", incomeType="COMMISSION", limit=2)
    assert first_page == fees[1:]
    assert await client.ok("GET", "/fapi/v1/income", incomeType="FUNDING_FEE") == []
