"""A whole trading session against ``grinder sim serve`` by a client written from the docs.

The simulator runs as its own process, started as an operator starts it. The client
(``tests/support/binance_client.py``) shares no code with GRINDER's adapter or with the
simulator. The session touches every endpoint a widely used client library calls in an
ordinary session -- market data, account and settings, orders, amendments, batches,
cancel-all, the countdown cancel, conditional orders, history -- and then checks that the
venue's answers agree with each other: the commissions of ``userTrades`` and the COMMISSION
income, realized PnL likewise, the wallet in four places against all income (the starting
balance is its first TRANSFER), the user-data stream's fills against the REST history, and
the write log against the writes the client sent. The market is moved only through the control API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.support.binance_client import BinanceFutures, UserStream, dec
from tests.support.simulator_process import simulator_process
from tests.support.wait import wait_until_async

KEY = "conformance-key"
SECRET = "conformance-secret"
START = Decimal(10000)
FILTERS = {
    "PRICE_FILTER",
    "LOT_SIZE",
    "MARKET_LOT_SIZE",
    "MAX_NUM_ORDERS",
    "MAX_NUM_ALGO_ORDERS",
    "MIN_NOTIONAL",
    "PERCENT_PRICE",
}
pytestmark = pytest.mark.subprocess


@pytest.fixture
def sim_url(cli: Any) -> Iterator[str]:
    env = cli.env(GRINDER_SIM_API_KEY=KEY, GRINDER_SIM_API_SECRET=SECRET)
    with simulator_process(env, "--tick-ms", "20") as url:
        yield url


class Control:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, self.base + path, json=body or {}) as resp:
            data = await resp.json()
            assert resp.status == 200, data
            return data

    async def mark(self, symbol: str, price: str) -> None:
        await self.call("POST", "/_sim/mark", {"symbol": symbol, "price": price})


@pytest.fixture
async def venue(sim_url: str) -> AsyncIterator[tuple[BinanceFutures, Control, UserStream]]:
    async with aiohttp.ClientSession() as session:
        client = BinanceFutures(session, sim_url, KEY, SECRET)
        control = Control(session, sim_url)
        await control.call("POST", "/_sim/walk", {"frozen": True})
        await control.mark("BTCUSDT", "65000.00")
        await control.mark("ETHUSDT", "3200.00")
        stream = await UserStream.open(client, sim_url.replace("http", "ws", 1))
        try:
            yield client, control, stream
        finally:
            await stream.close()


async def test_a_whole_session_by_a_docs_client_agrees_with_itself(
    venue: tuple[BinanceFutures, Control, UserStream],
) -> None:
    client, control, stream = venue
    await _market_data(client)
    rates = await _account_reads(client)
    await _settings(client, stream)
    await _trading(client, control, stream)
    await _countdown(client, control, stream)
    await _unknown_paths(client)
    await _history_agrees(client, stream, rates)
    await _writes_logged(client, control)


async def _market_data(c: BinanceFutures) -> None:
    assert (await c.public("/fapi/v1/ping")).data == {}
    assert isinstance((await c.public("/fapi/v1/time")).data["serverTime"], int)
    info = (await c.public("/fapi/v1/exchangeInfo")).data
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert {f["filterType"] for f in btc["filters"]} == FILTERS
    premium = (await c.public("/fapi/v1/premiumIndex", symbol="BTCUSDT")).data
    assert dec(premium["markPrice"]) == Decimal(65000)
    day = (await c.public("/fapi/v1/ticker/24hr", symbol="BTCUSDT")).data
    assert day["lastPrice"] == "65000.00"
    for path in ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price"):
        assert (await c.public(path, symbol="BTCUSDT")).data["price"] == "65000.00"
    book = (await c.public("/fapi/v1/ticker/bookTicker", symbol="BTCUSDT")).data
    assert dec(book["bidPrice"]) < Decimal(65000) < dec(book["askPrice"])
    depth = (await c.public("/fapi/v1/depth", symbol="BTCUSDT", limit=5)).data
    assert [dec(p) for p, _ in depth["bids"]] == sorted((dec(p) for p, _ in depth["bids"]))[::-1]
    assert len(depth["asks"]) == 5
    assert dec(depth["bids"][0][0]) < dec(depth["asks"][0][0])
    klines = (await c.public("/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=5)).data
    assert klines
    assert all(len(row) == 12 for row in klines)
    assert (await c.public("/fapi/v1/klines", symbol="BTCUSDT", interval="7m")).code == -1120
    assert isinstance((await c.public("/fapi/v1/fundingRate", symbol="BTCUSDT")).data, list)


async def _account_reads(c: BinanceFutures) -> dict[str, Decimal]:
    for path in ("/fapi/v2/balance", "/fapi/v3/balance"):
        assert [dec(a["balance"]) for a in await c.ok("GET", path)] == [START]
    for path in ("/fapi/v2/account", "/fapi/v3/account"):
        assert dec((await c.ok("GET", path))["totalWalletBalance"]) == START
    assert await c.ok("GET", "/fapi/v3/positionRisk") == []
    assert len(await c.ok("GET", "/fapi/v2/positionRisk")) == 20
    one = await c.ok("GET", "/fapi/v1/leverageBracket", symbol="BTCUSDT")
    assert one["symbol"] == "BTCUSDT"
    assert one["brackets"][0]["bracket"] == 1
    assert len(await c.ok("GET", "/fapi/v1/leverageBracket")) == 20
    fees = await c.ok("GET", "/fapi/v1/commissionRate", symbol="BTCUSDT")
    assert await c.ok("GET", "/fapi/v1/positionSide/dual") == {"dualSidePosition": False}
    assert await c.ok("GET", "/fapi/v1/multiAssetsMargin") == {"multiAssetsMargin": False}
    config = await c.ok("GET", "/fapi/v1/symbolConfig", symbol="BTCUSDT")
    assert config[0]["leverage"] == "20"
    assert config[0]["marginType"] == "CROSSED"
    assert (await c.ok("GET", "/fapi/v1/accountConfig"))["dualSidePosition"] is False
    assert await c.ok("GET", "/fapi/v1/adlQuantile") == []
    assert await c.ok("GET", "/fapi/v1/forceOrders") == []
    return {"maker": dec(fees["makerCommissionRate"]), "taker": dec(fees["takerCommissionRate"])}


async def _settings(c: BinanceFutures, stream: UserStream) -> None:
    changed = await c.ok("POST", "/fapi/v1/leverage", symbol="BTCUSDT", leverage=10)
    assert changed["leverage"] == 10
    assert changed["symbol"] == "BTCUSDT"
    await wait_until_async(
        lambda: stream.of("ACCOUNT_CONFIG_UPDATE", lambda e: e.get("ac", {}).get("l") == 10),
        "the leverage change on the stream",
    )
    row = (await c.ok("GET", "/fapi/v2/positionRisk", symbol="BTCUSDT"))[0]
    assert row["leverage"] == "10"
    assert (await c.post("/fapi/v1/leverage", symbol="BTCUSDT", leverage=126)).code == -4028
    await c.ok("POST", "/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED")
    assert (await c.post("/fapi/v1/marginType", symbol="BTCUSDT", marginType="ISOLATED")).code == (
        -4046
    )
    assert (await c.post("/fapi/v1/multiAssetsMargin", multiAssetsMargin=True)).code == -4167
    await c.ok("POST", "/fapi/v1/marginType", symbol="BTCUSDT", marginType="CROSSED")
    await c.ok("POST", "/fapi/v1/multiAssetsMargin", multiAssetsMargin=True)
    assert await c.ok("GET", "/fapi/v1/multiAssetsMargin") == {"multiAssetsMargin": True}
    assert (await c.post("/fapi/v1/marginType", symbol="ETHUSDT", marginType="ISOLATED")).code == (
        -4168
    )
    await c.ok("POST", "/fapi/v1/multiAssetsMargin", multiAssetsMargin=False)
    await wait_until_async(
        lambda: stream.of("ACCOUNT_CONFIG_UPDATE", lambda e: e.get("ai") == {"j": False}),
        "the multi-assets change on the stream",
    )
    await c.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition=True)
    assert (await c.ok("GET", "/fapi/v1/accountConfig"))["dualSidePosition"] is True
    await c.ok("POST", "/fapi/v1/positionSide/dual", dualSidePosition=False)


async def _order(c: BinanceFutures, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "type": "LIMIT", "timeInForce": "GTC"}
    if params.get("type") == "MARKET":
        base.pop("timeInForce")
    base.update(params)
    result: dict[str, Any] = await c.ok("POST", "/fapi/v1/order", **base)
    return result


async def _event(stream: UserStream, client_id: str, exec_type: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = await wait_until_async(
        lambda: [o for o in stream.order_updates(exec_type) if o["c"] == client_id],
        f"{exec_type} of {client_id} on the stream",
    )
    return found[-1]


async def _trading(c: BinanceFutures, control: Control, stream: UserStream) -> None:
    first = await _order(c, side="BUY", quantity="0.010", price="60000", newClientOrderId="cf-1")
    amended = await c.ok(
        "PUT", "/fapi/v1/order", symbol="BTCUSDT", orderId=first["orderId"], side="BUY",
        quantity="0.020", price="60100",
    )  # fmt: skip
    assert (amended["orderId"], amended["origQty"], amended["price"]) == (
        first["orderId"],
        "0.020",
        "60100.00",
    )
    assert (await _event(stream, "cf-1", "AMENDMENT"))["p"] == "60100.00"
    again = await c.put(
        "/fapi/v1/order", symbol="BTCUSDT", orderId=first["orderId"], side="BUY",
        quantity="0.020", price="60100",
    )  # fmt: skip
    assert again.code == -5027
    batch = await c.ok("POST", "/fapi/v1/batchOrders", batchOrders=[
        {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.010", "price": "70000", "newClientOrderId": "cf-2"},
        {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.100", "price": "3000", "newClientOrderId": "cf-3"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "STOP_MARKET", "quantity": "0.010",
         "stopPrice": "70000"},
    ])  # fmt: skip
    assert [b.get("clientOrderId", b.get("code")) for b in batch] == ["cf-2", "cf-3", -4120]
    moved = await c.ok("PUT", "/fapi/v1/batchOrders", batchOrders=[
        {"symbol": "BTCUSDT", "origClientOrderId": "cf-2", "side": "SELL",
         "quantity": "0.010", "price": "70100"},
    ])  # fmt: skip
    assert moved[0]["price"] == "70100.00"
    gone = await c.ok(
        "DELETE", "/fapi/v1/batchOrders", symbol="BTCUSDT", origClientOrderIdList=["cf-2", "nope"]
    )
    assert (gone[0]["status"], gone[1]["code"]) == ("CANCELED", -2011)
    taken = await _order(c, side="BUY", type="MARKET", quantity="0.010",
                         newClientOrderId="cf-4", newOrderRespType="RESULT")  # fmt: skip
    assert taken["status"] == "FILLED"
    await control.mark("BTCUSDT", "60000.00")
    assert (await _event(stream, "cf-1", "TRADE"))["X"] == "FILLED"
    await control.mark("BTCUSDT", "66000.00")
    await _order(c, side="SELL", type="MARKET", quantity="0.030", reduceOnly=True,
                 newClientOrderId="cf-5")  # fmt: skip
    assert (await _event(stream, "cf-5", "TRADE"))["rp"] != "0"
    maker = await _order(c, side="SELL", quantity="0.010", price="67000", timeInForce="GTX",
                         newClientOrderId="cf-6")  # fmt: skip
    crossed = await c.ok(
        "PUT", "/fapi/v1/order", symbol="BTCUSDT", orderId=maker["orderId"], side="SELL",
        quantity="0.010", price="65900",
    )  # fmt: skip
    assert crossed["status"] == "CANCELED"
    await _algo_orders(c)
    await c.ok("DELETE", "/fapi/v1/allOpenOrders", symbol="ETHUSDT")
    assert (await _event(stream, "cf-3", "CANCELED"))["X"] == "CANCELED"
    query = await c.ok("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="cf-1")
    assert query["status"] == "FILLED"
    assert await c.ok("GET", "/fapi/v1/openOrders") == []


async def _algo_orders(c: BinanceFutures) -> None:
    stop = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "BUY", "type": "STOP_MARKET",
            "quantity": "0.010", "triggerPrice": "70000"}  # fmt: skip
    placed = await c.ok("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="cf-a1")
    assert placed["algoStatus"] == "NEW"
    got = await c.ok("GET", "/fapi/v1/algoOrder", algoId=placed["algoId"])
    assert got["clientAlgoId"] == "cf-a1"
    assert [a["algoId"] for a in await c.ok("GET", "/fapi/v1/openAlgoOrders")] == [placed["algoId"]]
    await c.ok("DELETE", "/fapi/v1/algoOrder", algoId=placed["algoId"])
    await c.ok("POST", "/fapi/v1/algoOrder", **stop, clientAlgoId="cf-a2")
    await c.ok("DELETE", "/fapi/v1/algoOpenOrders", symbol="BTCUSDT")
    assert await c.ok("GET", "/fapi/v1/openAlgoOrders", symbol="BTCUSDT") == []
    history = await c.ok("GET", "/fapi/v1/allAlgoOrders", symbol="BTCUSDT")
    assert [(a["clientAlgoId"], a["algoStatus"]) for a in history] == [
        ("cf-a1", "CANCELED"),
        ("cf-a2", "CANCELED"),
    ]


async def _countdown(c: BinanceFutures, control: Control, stream: UserStream) -> None:
    for cid in ("cf-c1", "cf-c2"):
        await _order(c, side="BUY", quantity="0.010", price="60000", newClientOrderId=cid)
    await _order(c, symbol="ETHUSDT", side="BUY", quantity="0.100", price="3000",
                 newClientOrderId="cf-c3")  # fmt: skip
    algo = await c.ok("POST", "/fapi/v1/algoOrder", algoType="CONDITIONAL", symbol="BTCUSDT",
                      side="BUY", type="STOP_MARKET", quantity="0.010", triggerPrice="70000",
                      clientAlgoId="cf-ca")  # fmt: skip
    armed_after = (await c.public("/fapi/v1/time")).data["serverTime"]
    armed = await c.ok("POST", "/fapi/v1/countdownCancelAll", symbol="BTCUSDT", countdownTime=1500)
    assert armed == {"symbol": "BTCUSDT", "countdownTime": "1500"}
    await c.ok("POST", "/fapi/v1/countdownCancelAll", symbol="ETHUSDT", countdownTime=1000)
    await c.ok("POST", "/fapi/v1/countdownCancelAll", symbol="ETHUSDT", countdownTime=0)
    for cid in ("cf-c1", "cf-c2"):
        canceled = await _event(stream, cid, "CANCELED")
        assert canceled["T"] >= armed_after + 1500, "canceled before the countdown ended"
    assert await c.ok("GET", "/fapi/v1/openOrders", symbol="BTCUSDT") == []
    eth = await c.ok("GET", "/fapi/v1/openOrders", symbol="ETHUSDT")
    assert [o["clientOrderId"] for o in eth] == ["cf-c3"], "a stopped timer still canceled"
    algos = await c.ok("GET", "/fapi/v1/openAlgoOrders", symbol="BTCUSDT")
    assert [a["algoId"] for a in algos] == [algo["algoId"]], "countdown canceled an algo order"
    state = await control.call("GET", "/_sim/state")
    assert state["countdowns"]["timers"] == []
    await c.ok("DELETE", "/fapi/v1/algoOrder", algoId=algo["algoId"])
    await c.ok("DELETE", "/fapi/v1/order", symbol="ETHUSDT", origClientOrderId="cf-c3")


async def _unknown_paths(c: BinanceFutures) -> None:
    for path in ("/fapi/v1/positionRisk", "/fapi/v1/noSuchThing"):
        reply = await c.get(path)
        assert (reply.status, reply.code) == (404, -5000)
        assert reply.data["msg"] == f"Path {path}, Method GET is invalid"


async def _history_agrees(c: BinanceFutures, stream: UserStream, rates: dict[str, Decimal]) -> None:
    trades = await c.ok("GET", "/fapi/v1/userTrades", symbol="BTCUSDT")
    assert len(trades) == 3
    for t in trades:
        rate = rates["maker" if t["maker"] else "taker"]
        assert dec(t["commission"]) == (dec(t["price"]) * dec(t["qty"]) * rate).quantize(
            Decimal("1e-8")
        )
    incomes = await c.ok("GET", "/fapi/v1/income", limit=1000)
    by_type: dict[str, Decimal] = {}
    for i in incomes:
        by_type[i["incomeType"]] = by_type.get(i["incomeType"], Decimal(0)) + dec(i["income"])
    fees = sum((dec(t["commission"]) for t in trades), Decimal(0))
    realized = sum((dec(t["realizedPnl"]) for t in trades), Decimal(0))
    assert fees > 0
    assert realized != 0
    assert by_type["COMMISSION"] == -fees
    assert by_type["REALIZED_PNL"] == realized
    assert {i["tradeId"] for i in incomes if i["incomeType"] == "COMMISSION"} == {
        str(t["id"]) for t in trades
    }
    assert by_type["TRANSFER"] == START
    wallet = sum(by_type.values(), Decimal(0))
    for path in ("/fapi/v2/balance", "/fapi/v3/balance"):
        assert dec((await c.ok("GET", path))[0]["balance"]) == wallet
    for path in ("/fapi/v2/account", "/fapi/v3/account"):
        assert dec((await c.ok("GET", path))["totalWalletBalance"]) == wallet
    fills = stream.order_updates("TRADE")
    assert sum((dec(f["n"]) for f in fills), Decimal(0)) == fees
    assert sum((dec(f["rp"]) for f in fills), Decimal(0)) == realized
    assert sorted(f["t"] for f in fills) == sorted(t["id"] for t in trades)
    orders = {o["clientOrderId"]: o["status"] for o in await c.ok(
        "GET", "/fapi/v1/allOrders", symbol="BTCUSDT")}  # fmt: skip
    assert (orders["cf-1"], orders["cf-2"], orders["cf-c1"]) == ("FILLED", "CANCELED", "CANCELED")
    assert await c.ok("GET", "/fapi/v3/positionRisk") == []


async def _writes_logged(c: BinanceFutures, control: Control) -> None:
    sent = [
        f"{method} {path}"
        for method, path in c.sent
        if method != "GET" and path != "/fapi/v1/listenKey"
    ]
    logged = (await control.call("GET", f"/_sim/writes?apiKey={KEY}"))["writes"]
    assert [f"{w['method']} {w['path']}" for w in logged] == sent
    assert len(sent) >= 30
