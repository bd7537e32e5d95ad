"""The simulator over real loopback HTTP and WebSocket, with real HMAC signing.

Each test starts a fresh ``SimulatorServer`` on an ephemeral port, talks to it
with ``aiohttp.ClientSession`` exactly as a Binance client would (the signing
helper below is written here, independent of the simulator), and compares
response shapes with the Binance wire corpus. A fixture asserts that no
request ever hit the catch-all 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from grinder.exchange.simulator import SimConfig, SimulatorServer

# The Binance wire corpus: the ``corpus`` and ``shape_diff`` fixtures of tests/conftest.py (a test
# using them is skipped where the corpus is not checked out).
ShapeDiff = Callable[..., list[str]]

# --- a tiny Binance client, written for the test ---------------------------------------------


@dataclass
class Reply:
    status: int
    data: Any
    headers: dict[str, str]

    @property
    def code(self) -> int | None:
        return self.data.get("code") if isinstance(self.data, dict) else None

    @property
    def weight(self) -> int:
        return int(self.headers["X-MBX-USED-WEIGHT-1M"])


def hmac_sha256(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class Venue:
    """Signed Binance requests, as a real client sends them."""

    def __init__(self, session: aiohttp.ClientSession, server: SimulatorServer) -> None:
        self.session = session
        self.server = server
        self.base = server.base_url
        self.key = server.api_key
        self.secret = server.api_secret
        self.time_offset_ms = 0

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        signed: bool = True,
        api_key: str | None = "default",
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> Reply:
        values = {k: v for k, v in (params or {}).items() if v is not None}
        if signed:
            values["timestamp"] = (
                timestamp
                if timestamp is not None
                else int(time.time() * 1000) + self.time_offset_ms
            )
        text = urlencode(values)
        if signed:
            sig = hmac_sha256(secret or self.secret, text)
            text = f"{text}&signature={sig}" if text else f"signature={sig}"
        headers: dict[str, str] = {}
        key = self.key if api_key == "default" else api_key
        if key is not None:
            headers["X-MBX-APIKEY"] = key
        url = self.base + path
        data: str | None = None
        if method in ("POST", "PUT") and text:
            data = text
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif text:
            url = f"{url}?{text}"
        async with self.session.request(
            method, URL(url, encoded=True), data=data, headers=headers
        ) as resp:
            body = await resp.text()
            return Reply(resp.status, json.loads(body) if body else None, dict(resp.headers))

    async def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, self.base + path, json=body or {}) as resp:
            data = await resp.json()
            assert resp.status == 200, data
            return data

    async def order(self, **params: Any) -> Reply:
        base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"}
        base.update(params)
        if base["type"] == "LIMIT":
            base.setdefault("timeInForce", "GTC")
        return await self.call("POST", "/fapi/v1/order", base)

    async def mark(self, symbol: str, price: str) -> None:
        await self.control("POST", "/_sim/mark", {"symbol": symbol, "price": price})

    async def listen_key(self) -> str:
        reply = await self.call("POST", "/fapi/v1/listenKey", signed=False)
        assert reply.status == 200, reply.data
        return str(reply.data["listenKey"])

    async def stream(self, events: str | None = None, *, path_form: bool = False) -> Any:
        key = await self.listen_key()
        if path_form:
            url = f"{self.server.ws_base_url}/private/ws/{key}"
        else:
            url = f"{self.server.ws_base_url}/private/ws?listenKey={key}"
            if events is not None:
                url += f"&events={events}"
        return await self.session.ws_connect(url)


async def next_event(ws: Any, timeout: float = 2.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return dict(json.loads(msg.data))


async def collect(ws: Any, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    seen = []
    while True:
        event = await next_event(ws)
        seen.append(event)
        if until(event):
            return seen


async def silence(ws: Any, seconds: float = 0.3) -> bool:
    try:
        msg = await ws.receive(timeout=seconds)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message {msg}")


def otu(event: dict[str, Any]) -> tuple[str, str] | None:
    if event["e"] != "ORDER_TRADE_UPDATE":
        return None
    return event["o"]["x"], event["o"]["X"]


# --- fixtures ---------------------------------------------------------------------------------


def config(**overrides: Any) -> SimConfig:
    values: dict[str, Any] = {"walk_frozen": True, "tick_interval_ms": 20}
    values.update(overrides)
    return SimConfig(**values)


@pytest.fixture
def sim_config() -> SimConfig:
    return config()


@pytest.fixture
async def server(sim_config: SimConfig) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(host="127.0.0.1", port=0, config=sim_config) as srv:
        yield srv
        assert srv.exchange.internal_errors == 0, "a request hit the catch-all 500"


@pytest.fixture
async def venue(server: SimulatorServer) -> AsyncIterator[Venue]:
    async with aiohttp.ClientSession() as session:
        yield Venue(session, server)


def with_config(**overrides: Any) -> Any:
    return pytest.mark.parametrize("sim_config", [config(**overrides)], ids=["cfg"])


# --- the server itself ----------------------------------------------------------------------


async def test_server_binds_an_ephemeral_loopback_port(server: SimulatorServer) -> None:
    assert server.port > 0
    assert server.base_url == f"http://127.0.0.1:{server.port}"
    assert server.ws_base_url == f"ws://127.0.0.1:{server.port}"
    assert server.api_key == "grinder-sim-key"


# --- market data ------------------------------------------------------------------------------


async def test_ping_and_time(venue: Venue) -> None:
    ping = await venue.call("GET", "/fapi/v1/ping", signed=False, api_key=None)
    assert (ping.status, ping.data, ping.weight) == (200, {}, 1)
    now = int(time.time() * 1000)
    reply = await venue.call("GET", "/fapi/v1/time", signed=False, api_key=None)
    assert abs(reply.data["serverTime"] - now) < 2000


async def test_exchange_info_has_the_corpus_shape_and_the_2400_weight_limit(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    reply = await venue.call("GET", "/fapi/v1/exchangeInfo", signed=False, api_key=None)
    assert reply.status == 200
    info = reply.data
    real = corpus("nautilus_http_futures_usdt_exchange_info.json")
    assert set(info) == set(real)
    assert (
        shape_diff(info["symbols"][0], real["symbols"][0], loose_types=frozenset({"filters"})) == []
    )
    real_filters = {f["filterType"]: f for f in real["symbols"][0]["filters"]}
    for f in info["symbols"][0]["filters"]:
        assert shape_diff(f, real_filters[f["filterType"]]) == []
    weight = [r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
    assert weight == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}
    ]
    by_symbol = {s["symbol"]: s for s in info["symbols"]}
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "1000PEPEUSDT"} <= set(by_symbol)
    assert by_symbol["BTCUSDT"]["filters"] == real["symbols"][0]["filters"]
    assert by_symbol["ETHUSDT"]["filters"] == real["symbols"][1]["filters"]


async def test_ticker_price_and_premium_index_with_and_without_symbol(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    one = await venue.call("GET", "/fapi/v1/ticker/price", {"symbol": "BTCUSDT"}, signed=False)
    assert shape_diff(one.data, corpus("issue_2024_GET_fapi_v1_ticker_price.json")) == []
    assert one.data["price"] == "65000.00"
    every = await venue.call("GET", "/fapi/v1/ticker/price", signed=False)
    assert len(every.data) == 20
    mark = await venue.call("GET", "/fapi/v1/premiumIndex", {"symbol": "ETHUSDT"}, signed=False)
    assert list(mark.data) == [
        "symbol",
        "markPrice",
        "indexPrice",
        "estimatedSettlePrice",
        "lastFundingRate",
        "interestRate",
        "nextFundingTime",
        "time",
    ]
    assert mark.data["markPrice"] == "3200.00000000"
    marks = await venue.call("GET", "/fapi/v1/premiumIndex", signed=False)
    assert (len(marks.data), marks.weight) == (20, mark.weight + 10)
    bad = await venue.call("GET", "/fapi/v1/premiumIndex", {"symbol": "NOPE"}, signed=False)
    assert (bad.status, bad.data) == (400, {"code": -1121, "msg": "Invalid symbol."})


# --- authentication ------------------------------------------------------------------------------


async def test_signed_endpoints_check_key_signature_and_timestamp(venue: Venue) -> None:
    path = "/fapi/v1/openOrders"
    ok = await venue.call("GET", path)
    assert (ok.status, ok.data) == (200, [])
    missing = await venue.call("GET", path, api_key=None)
    assert (missing.status, missing.code) == (401, -2014)
    wrong = await venue.call("GET", path, api_key="not-the-key")
    assert (wrong.status, wrong.data) == (
        401,
        {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
    )
    bad_sig = await venue.call("GET", path, secret="not-the-secret")
    assert (bad_sig.status, bad_sig.data) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )
    old = await venue.call("GET", path, timestamp=int(time.time() * 1000) - 10_000)
    assert (old.status, old.data) == (
        400,
        {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
    )
    in_window = await venue.call(
        "GET", path, {"recvWindow": 20_000}, timestamp=int(time.time() * 1000) - 10_000
    )
    assert in_window.status == 200
    ahead = await venue.call("GET", path, timestamp=int(time.time() * 1000) + 5_000)
    assert ahead.code == -1021
    unsigned = await venue.call("GET", path, signed=False)
    assert (unsigned.status, unsigned.code) == (400, -1102)
    for reply in (missing, wrong, bad_sig, old):
        assert "X-MBX-USED-WEIGHT-1M" in reply.headers


async def test_signature_covers_the_form_body(venue: Venue) -> None:
    ts = int(time.time() * 1000)
    body = urlencode(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.002", "timestamp": ts}
    )
    headers = {"X-MBX-APIKEY": venue.key, "Content-Type": "application/x-www-form-urlencoded"}
    query = f"newOrderRespType=RESULT&signature={hmac_sha256(venue.secret, body)}"
    url = URL(f"{venue.base}/fapi/v1/order?{query}", encoded=True)
    async with venue.session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == -1022  # the query part was not signed
    query_part = "newOrderRespType=RESULT"
    sig = hmac_sha256(venue.secret, query_part + body)
    url = URL(f"{venue.base}/fapi/v1/order?{query_part}", encoded=True)
    async with venue.session.post(url, data=f"{body}&signature={sig}", headers=headers) as resp:
        data = await resp.json()
        assert resp.status == 200, data
        assert data["status"] == "FILLED"


async def test_unknown_paths_answer_binance_style_json(venue: Venue) -> None:
    reply = await venue.call("GET", "/fapi/v1/nope", signed=False)
    assert reply.status == 404
    assert reply.code == -5000


# --- orders ---------------------------------------------------------------------------------------


async def test_new_order_ack_and_result_have_the_corpus_shapes(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    ack = await venue.order(quantity="0.010", price="64000.0", newClientOrderId="grinder_d_1")
    assert ack.status == 200, ack.data
    assert shape_diff(ack.data, corpus("docs_POST_fapi_v1_order.json")) == []
    assert shape_diff(ack.data, corpus("reallog_2024_POST_fapi_v1_order_LIMIT.json")) == []
    assert (ack.data["clientOrderId"], ack.data["status"], ack.data["origQty"]) == (
        "grinder_d_1",
        "NEW",
        "0.010",
    )
    assert ack.data["orderId"] > 2**53
    assert ack.headers["X-MBX-ORDER-COUNT-1M"] == "1"
    assert ack.weight == 0
    market = await venue.order(type="MARKET", quantity="0.010")
    assert (market.data["status"], market.data["executedQty"]) == ("NEW", "0.000")  # ACK
    assert shape_diff(market.data, corpus("reallog_2024_POST_fapi_v1_order_MARKET_ack.json")) == []
    result = await venue.order(
        type="MARKET", side="SELL", quantity="0.010", newOrderRespType="RESULT"
    )
    assert (result.data["status"], result.data["executedQty"]) == ("FILLED", "0.010")
    assert result.data["avgPrice"] == "65000.00000"
    generated = await venue.order(quantity="0.010", price="64000.0")
    assert len(generated.data["clientOrderId"]) == 22


async def test_open_orders_with_and_without_symbol(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    await venue.order(quantity="0.010", price="64000.0")
    await venue.order(symbol="ETHUSDT", side="SELL", quantity="0.100", price="3300.00")
    one = await venue.call("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"})
    assert (len(one.data), one.weight) == (1, 1)
    every = await venue.call("GET", "/fapi/v1/openOrders")
    assert (len(every.data), every.weight) == (2, 41)
    docs = corpus("docs_GET_fapi_v1_openOrders.json")
    assert shape_diff(one.data, docs, absent_ok=frozenset({"activatePrice", "priceRate"})) == []
    assert {o["symbol"] for o in every.data} == {"BTCUSDT", "ETHUSDT"}
    bad = await venue.call("GET", "/fapi/v1/openOrders", {"symbol": "XXXUSDT"})
    assert bad.code == -1121


async def test_query_order_by_id_or_client_id_and_not_found(venue: Venue) -> None:
    placed = await venue.order(quantity="0.010", price="64000.0", newClientOrderId="q-1")
    by_id = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": placed.data["orderId"]}
    )
    by_cid = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "q-1"}
    )
    assert by_id.data == by_cid.data
    assert (by_id.data["status"], by_id.weight) == ("NEW", by_cid.weight - 1)
    assert "time" in by_id.data
    assert "cumQty" not in by_id.data
    missing = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"}
    )
    assert (missing.status, missing.data) == (400, {"code": -2013, "msg": "Order does not exist."})
    wrong_symbol = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "ETHUSDT", "origClientOrderId": "q-1"}
    )
    assert wrong_symbol.code == -2013
    neither = await venue.call("GET", "/fapi/v1/order", {"symbol": "BTCUSDT"})
    assert neither.code == -1102
    single = await venue.call(
        "GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT", "origClientOrderId": "q-1"}
    )
    assert single.data["clientOrderId"] == "q-1"


async def test_cancel_order_then_cancel_again_is_unknown_order(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    placed = await venue.order(quantity="0.010", price="64000.0", newClientOrderId="c-1")
    reply = await venue.call(
        "DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "c-1"}
    )
    assert reply.status == 200
    assert reply.data["status"] == "CANCELED"
    assert (
        shape_diff(
            reply.data,
            corpus("docs_DELETE_fapi_v1_order.json"),
            absent_ok=frozenset({"activatePrice", "priceRate"}),
            extra_ok=frozenset({"avgPrice"}),
        )
        == []
    )
    assert shape_diff(reply.data, corpus("reallog_2024_DELETE_fapi_v1_order_LIMIT.json")) == []
    again = await venue.call(
        "DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": placed.data["orderId"]}
    )
    assert (again.status, again.data) == (400, {"code": -2011, "msg": "Unknown order sent."})
    unknown = await venue.call(
        "DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "never"}
    )
    assert unknown.code == -2011
    query = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "c-1"}
    )
    assert query.data["status"] == "CANCELED"


async def test_cancel_all_open_orders(venue: Venue) -> None:
    for _ in range(3):
        await venue.order(quantity="0.010", price="64000.0")
    await venue.order(symbol="ETHUSDT", quantity="0.100", price="3100.00")
    reply = await venue.call("DELETE", "/fapi/v1/allOpenOrders", {"symbol": "BTCUSDT"})
    assert reply.data == {"code": 200, "msg": "The operation of cancel all open order is done."}
    left = await venue.call("GET", "/fapi/v1/openOrders")
    assert [o["symbol"] for o in left.data] == ["ETHUSDT"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"quantity": None}, -1102),
        ({"quantity": "1e-3"}, -1100),
        ({"quantity": "0.0001"}, -1111),
        ({"price": "64000.05"}, -4014),
        ({"quantity": "0.001", "price": "9000.0"}, -4164),
        ({"type": "STOP_MARKET", "stopPrice": "70000"}, -4120),
        ({"positionSide": "LONG"}, -4061),
        ({"side": "SELL", "type": "MARKET", "reduceOnly": "true", "price": None}, -2022),
        ({"newClientOrderId": "no spaces allowed"}, -1100),
        ({"symbol": "NOPEUSDT"}, -1121),
        ({"timeInForce": "GTX", "price": "66000.0"}, -5022),
    ],
)
async def test_order_rejections_over_http(venue: Venue, params: dict[str, Any], code: int) -> None:
    values: dict[str, Any] = {"quantity": "0.010", "price": "64000.0"}
    values.update(params)
    if values.get("type") == "MARKET":
        values.pop("price", None)
    reply = await venue.order(**{k: v for k, v in values.items() if v is not None})
    assert (reply.status, reply.code) == (400, code), reply.data
    assert isinstance(reply.data["msg"], str)


async def test_hedge_mode_over_http(venue: Venue) -> None:
    mode = await venue.call("GET", "/fapi/v1/positionSide/dual")
    assert (mode.data, mode.weight) == ({"dualSidePosition": False}, 30)
    switched = await venue.call("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "true"})
    assert switched.data == {"code": 200, "msg": "success"}
    again = await venue.call("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "true"})
    assert again.code == -4059
    no_side = await venue.order(type="MARKET", quantity="0.010")
    assert no_side.code == -4061
    reduce = await venue.order(
        type="MARKET", quantity="0.010", positionSide="LONG", reduceOnly="false"
    )
    assert (reduce.code, reduce.data["msg"]) == (
        -1106,
        "Parameter 'reduceonly' sent when not required.",
    )
    long = await venue.order(type="MARKET", quantity="0.020", positionSide="LONG")
    short = await venue.order(type="MARKET", side="SELL", quantity="0.010", positionSide="SHORT")
    assert long.status == short.status == 200
    busy = await venue.call("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "false"})
    assert busy.code == -4068
    risk = await venue.call("GET", "/fapi/v3/positionRisk", {"symbol": "BTCUSDT"})
    sides = {r["positionSide"]: r["positionAmt"] for r in risk.data}
    assert sides == {"LONG": "0.020", "SHORT": "-0.010"}
    too_much = await venue.order(type="MARKET", side="BUY", quantity="0.050", positionSide="SHORT")
    assert too_much.code == -2022


async def test_position_mode_shape(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    mode = await venue.call("GET", "/fapi/v1/positionSide/dual")
    assert (
        shape_diff(mode.data, corpus("nautilus_http_futures_account_position_side_dual.json")) == []
    )


# --- positions and account ---------------------------------------------------------------------


async def test_position_risk_v3_lists_only_symbols_with_a_position_or_orders(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    empty = await venue.call("GET", "/fapi/v3/positionRisk")
    assert (empty.data, empty.weight) == ([], 5)
    await venue.order(type="MARKET", quantity="0.010")
    await venue.order(symbol="ETHUSDT", quantity="0.100", price="3100.00")
    risk = await venue.call("GET", "/fapi/v3/positionRisk")
    rows = {r["symbol"]: r for r in risk.data}
    assert set(rows) == {"BTCUSDT", "ETHUSDT"}
    assert (rows["BTCUSDT"]["positionAmt"], rows["ETHUSDT"]["positionAmt"]) == ("0.010", "0.000")
    assert rows["BTCUSDT"]["entryPrice"] == "65000"
    assert rows["ETHUSDT"]["bidNotional"] == "310"
    assert shape_diff(risk.data, corpus("docs_GET_fapi_v3_positionRisk_oneway.json")) == []
    await venue.mark("BTCUSDT", "66000.00")
    risk = await venue.call("GET", "/fapi/v3/positionRisk", {"symbol": "BTCUSDT"})
    assert risk.data[0]["unRealizedProfit"] == "10.00000000"
    assert risk.data[0]["markPrice"] == "66000.00000000"


@with_config(dual_side_position=True)
async def test_position_risk_v3_hedge_shape(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    await venue.order(type="MARKET", side="SELL", quantity="0.010", positionSide="SHORT")
    risk = await venue.call("GET", "/fapi/v3/positionRisk")
    assert [(r["positionSide"], r["positionAmt"]) for r in risk.data] == [("SHORT", "-0.010")]
    assert shape_diff(risk.data, corpus("docs_GET_fapi_v3_positionRisk_hedge.json")) == []


async def test_position_risk_v2_lists_every_symbol(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    risk = await venue.call("GET", "/fapi/v2/positionRisk")
    assert len(risk.data) == 20
    assert shape_diff(risk.data, corpus("nautilus_rs_futures_position_risk.json")) == []
    flat = next(r for r in risk.data if r["symbol"] == "BTCUSDT")
    assert (flat["positionAmt"], flat["updateTime"], flat["entryPrice"]) == ("0.000", 0, "0.0")


async def test_account_v2_and_v3_shapes(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    await venue.order(type="MARKET", quantity="0.010")
    v2 = await venue.call("GET", "/fapi/v2/account")
    real_v2 = corpus("jqcta_GET_fapi_v2_account_2024_trimmed.json")
    assert shape_diff(v2.data, real_v2) == []
    assert v2.weight == 5
    v3 = await venue.call("GET", "/fapi/v3/account")
    real_v3 = corpus("ccxt_fapi_v3_account.json")
    # ccxt recorded integers as strings (see SOURCES.md); only updateTime is affected here
    assert shape_diff(v3.data, real_v3, loose_types=frozenset({"updateTime"})) == []
    assert [p["symbol"] for p in v3.data["positions"]] == ["BTCUSDT"]
    assert isinstance(v3.data["positions"][0]["updateTime"], int)


# --- conditional (algo) orders -----------------------------------------------------------------


async def place_algo(venue: Venue, **params: Any) -> Reply:
    base: dict[str, Any] = {
        "algoType": "CONDITIONAL",
        "symbol": "ETHUSDT",
        "side": "SELL",
        "type": "STOP_MARKET",
        "quantity": "0.100",
        "triggerPrice": "3000.00",
    }
    base.update(params)
    return await venue.call("POST", "/fapi/v1/algoOrder", base)


async def test_algo_order_endpoints(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    placed = await place_algo(venue, clientAlgoId="grinder_sl_1")
    assert placed.status == 200, placed.data
    assert (placed.data["algoStatus"], placed.data["orderType"], placed.weight) == (
        "NEW",
        "STOP_MARKET",
        0,
    )
    regular = await venue.call("GET", "/fapi/v1/openOrders")
    assert regular.data == []  # conditional orders live on their own endpoints
    open_algo = await venue.call("GET", "/fapi/v1/openAlgoOrders")
    assert (len(open_algo.data), open_algo.weight - regular.weight) == (1, 40)
    hand_built = corpus("nautilus_rs_futures_open_algo_orders.json")
    # that fixture is hand-built with "type"; the docs (and we) say "orderType"
    assert (
        shape_diff(
            open_algo.data,
            hand_built,
            absent_ok=frozenset({"type"}),
            extra_ok=frozenset(open_algo.data[0]) - set(hand_built[0]),
        )
        == []
    )
    one = await venue.call("GET", "/fapi/v1/algoOrder", {"clientAlgoId": "grinder_sl_1"})
    response = corpus("nautilus_rs_futures_algo_order_response.json")
    assert (
        shape_diff(
            one.data,
            response,
            absent_ok=frozenset({"actualType", "actualQty"}),
            extra_ok=frozenset(one.data) - set(response),
        )
        == []
    )
    assert one.data["actualOrderId"] == ""
    by_id = await venue.call("GET", "/fapi/v1/algoOrder", {"algoId": placed.data["algoId"]})
    assert by_id.data == one.data
    cancel = await venue.call("DELETE", "/fapi/v1/algoOrder", {"clientAlgoId": "grinder_sl_1"})
    assert cancel.data == {
        "algoId": placed.data["algoId"],
        "clientAlgoId": "grinder_sl_1",
        "code": "200",
        "msg": "success",
    }
    again = await venue.call("DELETE", "/fapi/v1/algoOrder", {"algoId": placed.data["algoId"]})
    assert again.code == -2011
    unknown = await venue.call("GET", "/fapi/v1/algoOrder", {"algoId": 1})
    assert unknown.code == -2013
    after = await venue.call("GET", "/fapi/v1/algoOrder", {"clientAlgoId": "grinder_sl_1"})
    assert after.data["algoStatus"] == "CANCELED"
    immediate = await place_algo(venue, triggerPrice="3300.00")
    assert immediate.code == -2021


async def test_a_triggered_algo_order_creates_a_regular_order(venue: Venue) -> None:
    await venue.order(symbol="ETHUSDT", type="MARKET", quantity="0.100")
    placed = await place_algo(venue, clientAlgoId="sl-2", reduceOnly="true")
    ws = await venue.stream()
    await venue.mark("ETHUSDT", "2990.00")
    seen = await collect(ws, lambda e: e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED")
    flow = [(e["e"], e.get("o", {}).get("X")) for e in seen if e["e"] != "TRADE_LITE"]
    assert flow == [
        ("ALGO_UPDATE", "TRIGGERING"),
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "FILLED"),
        ("ACCOUNT_UPDATE", None),
        ("ALGO_UPDATE", "TRIGGERED"),
        ("ALGO_UPDATE", "FINISHED"),
    ]
    child = next(e["o"] for e in seen if e["e"] == "ORDER_TRADE_UPDATE")
    assert (child["c"], child["si"], child["ss"]) == ("sl-2", placed.data["algoId"], -1)
    done = await venue.call("GET", "/fapi/v1/algoOrder", {"algoId": placed.data["algoId"]})
    assert (done.data["algoStatus"], done.data["actualOrderId"]) == ("FINISHED", str(child["i"]))
    query = await venue.call("GET", "/fapi/v1/order", {"symbol": "ETHUSDT", "orderId": child["i"]})
    assert query.data["status"] == "FILLED"
    await ws.close()


# --- user-data stream ---------------------------------------------------------------------------


async def test_listen_key_endpoints(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    created = await venue.call("POST", "/fapi/v1/listenKey", signed=False)
    assert shape_diff(created.data, corpus("docs_POST_fapi_v1_listenKey.json")) == []
    kept = await venue.call("PUT", "/fapi/v1/listenKey", signed=False)
    assert shape_diff(kept.data, corpus("docs_PUT_fapi_v1_listenKey.json")) == []
    assert kept.data == created.data
    again = await venue.call("POST", "/fapi/v1/listenKey", signed=False)
    assert again.data == created.data
    closed = await venue.call("DELETE", "/fapi/v1/listenKey", signed=False)
    assert closed.data == corpus("docs_DELETE_fapi_v1_listenKey.json")
    gone = await venue.call("PUT", "/fapi/v1/listenKey", signed=False)
    assert (gone.status, gone.code) == (400, -1125)
    no_key = await venue.call("POST", "/fapi/v1/listenKey", signed=False, api_key=None)
    assert no_key.code == -2014
    fresh = await venue.call("POST", "/fapi/v1/listenKey", signed=False)
    assert fresh.data["listenKey"] != created.data["listenKey"]


async def test_stream_reports_new_fill_and_cancel_in_binance_shapes(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    ws = await venue.stream()
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="ws-1")
    new = await next_event(ws)
    assert otu(new) == ("NEW", "NEW")
    docs = corpus("docs_ORDER_TRADE_UPDATE.json")
    assert shape_diff(new, docs, absent_ok=frozenset({"AP", "cr"})) == []
    await venue.mark("BTCUSDT", "63900.00")
    seen = await collect(ws, lambda e: e["e"] == "ACCOUNT_UPDATE")
    assert [e["e"] for e in seen] == ["TRADE_LITE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    assert otu(seen[1]) == ("TRADE", "FILLED")
    assert shape_diff(seen[2], corpus("docs_ACCOUNT_UPDATE.json")) == []
    assert shape_diff(seen[0], corpus("docs_TRADE_LITE.json")) == []
    await venue.order(quantity="0.010", price="63000.0", newClientOrderId="ws-2")
    assert otu(await next_event(ws)) == ("NEW", "NEW")
    await venue.call("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "ws-2"})
    canceled = await next_event(ws)
    assert otu(canceled) == ("CANCELED", "CANCELED")
    assert canceled["o"]["c"] == "ws-2"
    await ws.close()


async def test_partial_fills_over_the_stream(venue: Venue) -> None:
    await venue.control("POST", "/_sim/liquidity", {"symbol": "BTCUSDT", "quantity": "0.004"})
    ws = await venue.stream(events="ORDER_TRADE_UPDATE")
    await venue.order(quantity="0.010", price="64000.0")
    await venue.mark("BTCUSDT", "63900.00")
    seen = await collect(ws, lambda e: e["o"]["X"] == "FILLED")
    assert [otu(e) for e in seen] == [
        ("NEW", "NEW"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "FILLED"),
    ]
    await ws.close()


async def test_event_filters_with_slash_comma_or_path_form(venue: Venue) -> None:
    only_orders = await venue.stream(events="ORDER_TRADE_UPDATE/listenKeyExpired")
    comma = await venue.stream(events="ACCOUNT_UPDATE,TRADE_LITE")
    everything = await venue.stream(path_form=True)
    await venue.order(type="MARKET", quantity="0.010")
    assert [(await next_event(only_orders))["e"] for _ in range(2)] == ["ORDER_TRADE_UPDATE"] * 2
    assert [(await next_event(comma))["e"] for _ in range(2)] == ["TRADE_LITE", "ACCOUNT_UPDATE"]
    assert len([await next_event(everything) for _ in range(4)]) == 4
    assert await silence(only_orders, 0.1)
    for ws in (only_orders, comma, everything):
        await ws.close()


async def test_unknown_listen_key_is_refused(venue: Venue) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await venue.session.ws_connect(f"{venue.server.ws_base_url}/private/ws?listenKey=nope")
    assert info.value.status == 400
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await venue.session.ws_connect(f"{venue.server.ws_base_url}/private/ws/nope")


@with_config(listen_key_validity_ms=300)
async def test_an_expiring_listen_key_sends_listen_key_expired_then_closes(venue: Venue) -> None:
    ws = await venue.stream()
    key = venue.server.exchange.hub.dump()["listenKeys"][0]["listenKey"]
    event = await next_event(ws, timeout=3)
    assert (event["e"], event["listenKey"], type(event["E"])) == ("listenKeyExpired", key, str)
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    gone = await venue.call("PUT", "/fapi/v1/listenKey", signed=False)
    assert gone.code == -1125
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await venue.session.ws_connect(f"{venue.server.ws_base_url}/private/ws?listenKey={key}")


async def test_deleting_the_listen_key_ends_its_sockets(venue: Venue) -> None:
    ws = await venue.stream()
    await venue.call("DELETE", "/fapi/v1/listenKey", signed=False)
    assert (await next_event(ws))["e"] == "listenKeyExpired"
    assert (await ws.receive(timeout=2)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_listen_key_expired_is_filtered_like_any_event(venue: Venue) -> None:
    ws = await venue.stream(events="ORDER_TRADE_UPDATE")
    await venue.control("POST", "/_sim/listen-keys/expire")
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


@with_config(max_connection_age_ms=250)
async def test_connections_are_closed_at_their_maximum_age(venue: Venue) -> None:
    ws = await venue.stream()
    started = time.monotonic()
    msg = await ws.receive(timeout=3)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_drop_connections_fault(venue: Venue, mode: str) -> None:
    ws = await venue.stream()
    dropped = await venue.control("POST", "/_sim/ws/drop", {"mode": mode})
    assert dropped == {"dropped": 1}
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    again = await venue.stream()  # the listenKey is still good
    await venue.order(type="MARKET", quantity="0.010")
    assert (await next_event(again))["e"] == "ORDER_TRADE_UPDATE"
    await again.close()


async def test_suppressed_events_are_never_sent(venue: Venue) -> None:
    ws = await venue.stream(events="ORDER_TRADE_UPDATE")
    await venue.control(
        "POST", "/_sim/stream/suppress", {"count": 1, "eventTypes": ["ORDER_TRADE_UPDATE"]}
    )
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="lost")
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="kept")
    assert (await next_event(ws))["o"]["c"] == "kept"
    await venue.control("POST", "/_sim/stream/suppress", {"clientOrderId": "kept"})
    await venue.call("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "kept"})
    await venue.call("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost"})
    event = await next_event(ws)
    assert (event["o"]["c"], event["o"]["X"]) == ("lost", "CANCELED")
    assert await silence(ws, 0.1)
    state = await venue.control("GET", "/_sim/state")
    assert state["stream"]["eventsSuppressed"] == 2
    await ws.close()


# --- rate limits and faults -----------------------------------------------------------------------


@with_config(weight_limit=100, rejections_before_ban=2, ban_seconds=60)
async def test_weights_then_429_then_418(venue: Venue) -> None:
    first = await venue.call("GET", "/fapi/v1/openOrders")
    assert first.weight == 40
    second = await venue.call("GET", "/fapi/v1/openOrders")
    assert second.weight == 80
    limited = await venue.call("GET", "/fapi/v1/openOrders")
    assert (limited.status, limited.code) == (429, -1003)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.weight == 120
    still = await venue.call("GET", "/fapi/v1/ping", signed=False)
    assert still.status == 429
    banned = await venue.call("GET", "/fapi/v1/ping", signed=False)
    assert (banned.status, banned.code) == (418, -1003)
    assert int(banned.headers["Retry-After"]) == 60
    assert "IP banned until" in banned.data["msg"]
    state = await venue.control("GET", "/_sim/state")  # the control API is not rate limited
    assert state["weights"]["responses418"] == 1


async def test_forced_429_and_ban_faults(venue: Venue) -> None:
    await venue.control("POST", "/_sim/faults/rate-limit", {"count": 2})
    codes = [(await venue.call("GET", "/fapi/v1/ping", signed=False)).status for _ in range(3)]
    assert codes == [429, 429, 200]
    await venue.control("POST", "/_sim/faults/ban", {"seconds": 2})
    banned = await venue.call("GET", "/fapi/v1/time", signed=False)
    assert (banned.status, banned.headers["Retry-After"]) == (418, "2")
    await venue.control("DELETE", "/_sim/faults")
    assert (await venue.call("GET", "/fapi/v1/time", signed=False)).status == 200


async def test_forced_429_on_some_paths_only(venue: Venue) -> None:
    limited = {"count": 1, "retryAfter": 60, "paths": ["/fapi/v1/time"]}
    answer = await venue.control("POST", "/_sim/faults/rate-limit", limited)
    assert answer["paths"] == ["/fapi/v1/time"]
    assert (await venue.call("GET", "/fapi/v1/ping", signed=False)).status == 200  # not kept
    time_429 = await venue.call("GET", "/fapi/v1/time", signed=False)
    assert (time_429.status, time_429.headers["Retry-After"]) == (429, "60")
    assert (await venue.call("GET", "/fapi/v1/time", signed=False)).status == 200  # one only
    async with venue.session.post(
        venue.base + "/_sim/faults/rate-limit", json={"count": 3, "paths": "/fapi/v1/time"}
    ) as resp:  # a bad list is refused whole: nothing of it applied
        assert resp.status == 400, await resp.text()
    state = await venue.control("GET", "/_sim/state")
    assert state["weights"]["forced429Remaining"] == 0


async def test_forced_429_with_a_retry_after_and_the_weight_of_other_clients(
    venue: Venue,
) -> None:
    await venue.control("POST", "/_sim/faults/rate-limit", {"count": 1, "retryAfter": 60})
    limited = await venue.call("GET", "/fapi/v1/ping", signed=False)
    assert (limited.status, limited.headers["Retry-After"]) == (429, "60")
    await venue.control("POST", "/_sim/faults/weight", {"usedWeight1m": 2300})
    ping = await venue.call("GET", "/fapi/v1/ping", signed=False)
    assert (ping.status, ping.weight) == (200, 2301)
    state = await venue.control("GET", "/_sim/state")
    assert state["weights"]["otherWeight1m"] == 2300
    await venue.control("DELETE", "/_sim/faults")
    assert (await venue.control("GET", "/_sim/state"))["weights"]["otherWeight1m"] == 0


async def test_latency_of_some_requests_only(venue: Venue) -> None:
    await venue.control(
        "POST",
        "/_sim/faults/latency",
        {"restMs": 300, "methods": ["delete"], "paths": ["/fapi/v1/listenKey"]},
    )
    started = time.monotonic()
    await venue.call("GET", "/fapi/v1/ping", signed=False)
    assert time.monotonic() - started < 0.25
    started = time.monotonic()
    await venue.call("DELETE", "/fapi/v1/listenKey", signed=False)
    assert time.monotonic() - started >= 0.29


async def test_a_burst_of_5xx(venue: Venue) -> None:
    await venue.control("POST", "/_sim/faults/errors", {"count": 2, "status": 503})
    await venue.control(
        "POST", "/_sim/faults/errors", {"count": 1, "status": 502, "paths": ["/fapi/v1/time"]}
    )
    first = await venue.call("GET", "/fapi/v1/ping", signed=False)
    second = await venue.call("GET", "/fapi/v1/openOrders")
    assert (first.status, second.status) == (503, 503)
    assert first.data == {
        "code": -1007,
        "msg": "Unknown error, please check your request or try again later.",
    }
    assert (await venue.call("GET", "/fapi/v1/ping", signed=False)).status == 200
    bad_gateway = await venue.call("GET", "/fapi/v1/time", signed=False)
    assert (bad_gateway.status, bad_gateway.code) == (502, -1001)
    assert (await venue.call("GET", "/fapi/v1/time", signed=False)).status == 200


async def test_a_5xx_after_the_order_was_executed(venue: Venue) -> None:
    await venue.control(
        "POST",
        "/_sim/faults/errors",
        {"count": 1, "status": 503, "apply": True, "paths": ["/fapi/v1/order"]},
    )
    reply = await venue.order(quantity="0.010", price="64000.0", newClientOrderId="unknown-fate")
    assert reply.status == 503
    query = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "unknown-fate"}
    )
    assert query.data["status"] == "NEW"


async def test_rest_and_ws_latency(venue: Venue) -> None:
    await venue.control("POST", "/_sim/faults/latency", {"restMs": 150, "wsMs": 150})
    ws = await venue.stream()
    started = time.monotonic()
    await venue.order(quantity="0.010", price="64000.0")
    rest_done = time.monotonic()
    await next_event(ws)
    assert rest_done - started >= 0.14
    assert time.monotonic() - started >= 0.29
    await ws.close()


async def test_clock_skew_moves_server_time_and_the_recv_window(venue: Venue) -> None:
    await venue.control("POST", "/_sim/faults/clock-skew", {"offsetMs": 10_000})
    server_time = (await venue.call("GET", "/fapi/v1/time", signed=False)).data["serverTime"]
    assert server_time - int(time.time() * 1000) > 9_000
    skewed = await venue.call("GET", "/fapi/v1/openOrders")
    assert skewed.code == -1021
    venue.time_offset_ms = server_time - int(time.time() * 1000)
    synced = await venue.call("GET", "/fapi/v1/openOrders")
    assert synced.status == 200


async def test_order_query_lag_fault(venue: Venue) -> None:
    await venue.control("POST", "/_sim/faults/order-query-lag", {"ms": 300})
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="young")
    params = {"symbol": "BTCUSDT", "origClientOrderId": "young"}
    assert (await venue.call("GET", "/fapi/v1/order", params)).code == -2013
    await asyncio.sleep(0.35)
    assert (await venue.call("GET", "/fapi/v1/order", params)).data["status"] == "NEW"


async def test_the_catch_all_answers_500_with_code_1000(
    venue: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grinder.exchange.simulator import views

    def boom(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(views, "ticker_price", boom)
    reply = await venue.call("GET", "/fapi/v1/ticker/price", {"symbol": "BTCUSDT"}, signed=False)
    assert (reply.status, reply.code) == (500, -1000)
    assert venue.server.exchange.internal_errors == 1
    venue.server.exchange.internal_errors = 0  # expected here; the fixture checks the rest


# --- control API ------------------------------------------------------------------------------


async def test_injected_orders_look_placed_by_hand(venue: Venue) -> None:
    ws = await venue.stream(events="ORDER_TRADE_UPDATE")
    injected = await venue.control(
        "POST",
        "/_sim/orders",
        {
            "symbol": "ETHUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.500",
            "price": "3400.00",
            "clientOrderId": "web_3c5dm4etfEvSlDpirssF",
        },
    )
    assert injected["status"] == "NEW"
    event = await next_event(ws)
    assert event["o"]["c"] == "web_3c5dm4etfEvSlDpirssF"
    listed = await venue.call("GET", "/fapi/v1/openOrders", {"symbol": "ETHUSDT"})
    assert [o["clientOrderId"] for o in listed.data] == ["web_3c5dm4etfEvSlDpirssF"]
    quiet = await venue.control(
        "POST",
        "/_sim/orders",
        {
            "symbol": "ETHUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.500",
            "price": "3000.00",
            "clientOrderId": "grinder_other_ETHUSDT_1_1_1",
            "emitEvents": False,
        },
    )
    assert quiet["status"] == "NEW"
    assert await silence(ws, 0.15)
    await ws.close()


async def test_vanished_orders_disappear_without_an_event(venue: Venue) -> None:
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="vanish-me")
    ws = await venue.stream()
    await venue.control("DELETE", "/_sim/orders", {"clientOrderId": "vanish-me"})
    assert await silence(ws, 0.15)
    listed = await venue.call("GET", "/fapi/v1/openOrders")
    assert listed.data == []
    query = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "vanish-me"}
    )
    assert query.code == -2013
    await ws.close()


async def test_injected_positions_by_trade_or_by_overwrite(venue: Venue) -> None:
    ws = await venue.stream(events="ACCOUNT_UPDATE")
    traded = await venue.control(
        "POST",
        "/_sim/positions",
        {
            "symbol": "SOLUSDT",
            "quantity": "-12",
            "price": "151.0000",
            "clientOrderId": "autoclose-1",
        },
    )
    assert traded["position"]["positionAmt"] == "-12"
    assert (await next_event(ws))["a"]["P"][0]["pa"] == "-12"
    await venue.control(
        "POST", "/_sim/positions", {"symbol": "DOGEUSDT", "quantity": "500", "via": "set"}
    )
    assert (await next_event(ws))["a"]["m"] == "ADJUSTMENT"
    risk = await venue.call("GET", "/fapi/v3/positionRisk")
    amounts = {r["symbol"]: (r["positionAmt"], r["entryPrice"]) for r in risk.data}
    assert amounts == {"SOLUSDT": ("-12", "151"), "DOGEUSDT": ("500", "0.15")}
    await ws.close()


async def test_ended_by_the_venue_and_forced_fills(venue: Venue) -> None:
    await venue.order(quantity="0.010", price="60000.0", newClientOrderId="victim")
    await venue.control(
        "POST", "/_sim/orders/cancel", {"clientOrderId": "victim", "status": "EXPIRED"}
    )
    query = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "victim"}
    )
    assert query.data["status"] == "EXPIRED"
    await venue.order(quantity="0.010", price="60000.0", newClientOrderId="half")
    filled = await venue.control(
        "POST", "/_sim/orders/fill", {"clientOrderId": "half", "quantity": "0.004"}
    )
    assert filled["order"]["status"] == "PARTIALLY_FILLED"


async def test_state_dump_counts_port_calls_and_reset(venue: Venue) -> None:
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="a")
    await venue.call("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "a"})
    await place_algo(venue)
    await venue.call("GET", "/fapi/v1/openOrders")
    state = await venue.control("GET", "/_sim/state")
    assert state["counters"]["writeRequests"] == 3
    assert state["counters"]["byEndpoint"]["GET /fapi/v1/openOrders"] == 1
    assert len(state["algoOrders"]) == 1
    assert state["weights"]["byIp"]["127.0.0.1"]["usedWeight1m"] == 41
    await venue.control("POST", "/_sim/reset")
    state = await venue.control("GET", "/_sim/state")
    assert (state["orders"], state["algoOrders"], state["counters"]["writeRequests"]) == ([], [], 0)


async def test_walk_can_step_and_marks_drive_matching(venue: Venue) -> None:
    before = await venue.call("GET", "/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}, signed=False)
    walked = await venue.control("POST", "/_sim/walk", {"steps": 5, "volatility": 0.01})
    assert walked["markPrices"]["BTCUSDT"] != "65000.00"
    after = await venue.call("GET", "/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}, signed=False)
    assert Decimal(after.data["markPrice"]) != Decimal(before.data["markPrice"])
    bad = await venue.session.post(venue.base + "/_sim/mark", json={"symbol": "NOPE"})
    assert bad.status == 400


@with_config(walk_frozen=False, tick_interval_ms=10, walk_volatility=0.01)
async def test_the_background_walk_moves_the_mark(venue: Venue) -> None:
    await asyncio.sleep(0.1)
    state = await venue.control("GET", "/_sim/state")
    assert state["markPrices"]["BTCUSDT"] != "65000.00"


async def test_a_thousand_open_orders_over_twenty_symbols_snapshot(venue: Venue) -> None:
    sim = venue.server.exchange
    from grinder.exchange.simulator.params import Params
    from grinder.exchange.simulator.validation import parse_new_order

    symbols = list(sim.specs)
    for i in range(1000):
        spec = sim.specs[symbols[i % 20]]
        price = (spec.initial_mark * Decimal("0.95") / spec.tick_size).to_integral_value()
        price *= spec.tick_size
        qty = (Decimal(20) / price / spec.step_size).to_integral_value() * spec.step_size
        params = Params.of(
            symbol=spec.symbol,
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity=max(qty, spec.min_qty),
            price=price,
        )
        request = parse_new_order(params, sim.specs, dual=False, mark_of=sim.book.mark, now_ms=0)
        sim.account.place(request)
    started = time.perf_counter()
    reply = await venue.call("GET", "/fapi/v1/openOrders")
    elapsed = time.perf_counter() - started
    assert (reply.status, len(reply.data), reply.weight) == (200, 1000, 40)
    print(f"openOrders snapshot of 1000 orders over loopback: {elapsed * 1000:.1f} ms")


async def test_cancel_all_open_algo_orders(venue: Venue) -> None:
    await place_algo(venue, triggerPrice="3000.00")
    await place_algo(venue, triggerPrice="2900.00")
    reply = await venue.call("DELETE", "/fapi/v1/algoOpenOrders", {"symbol": "ETHUSDT"})
    assert reply.data == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert (await venue.call("GET", "/fapi/v1/openAlgoOrders", {"symbol": "ETHUSDT"})).data == []


async def test_bad_control_requests_are_400_not_500(venue: Venue) -> None:
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/_sim/mark", {"symbol": "BTCUSDT", "price": "NaN"}),
        ("POST", "/_sim/mark", {"symbol": "NOPE", "price": "1"}),
        ("POST", "/_sim/tick", {"steps": 10**9}),
        ("POST", "/_sim/orders", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"}),
        ("DELETE", "/_sim/orders", {"clientOrderId": "never-existed"}),
        ("POST", "/_sim/faults/errors", {"status": 200}),
        ("POST", "/_sim/clock/advance", {"ms": 1000}),
        ("POST", "/_sim/reset", "{not json"),
    ]
    for method, path, body in cases:
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
        async with venue.session.request(method, venue.base + path, **kwargs) as resp:
            data = await resp.json()
            assert resp.status == 400, (path, body, data)
            assert isinstance(data["error"], str)
    injected = await venue.session.post(
        venue.base + "/_sim/orders",
        json={
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "9000.0",
        },
    )
    assert (injected.status, (await injected.json())["code"]) == (400, -4164)


async def test_a_manual_clock_drives_listen_key_expiry_through_the_control_api() -> None:
    from grinder.exchange.simulator import ManualClock

    clock = ManualClock(start_ms=int(time.time() * 1000))
    async with (
        SimulatorServer(config=config(), clock=clock, background=False) as srv,
        aiohttp.ClientSession() as session,
    ):
        venue = Venue(session, srv)
        ws = await venue.stream()
        await venue.control("POST", "/_sim/clock/advance", {"ms": 59 * 60 * 1000})
        assert await silence(ws, 0.1)
        await venue.call("PUT", "/fapi/v1/listenKey", signed=False)
        await venue.control("POST", "/_sim/clock/advance", {"ms": 59 * 60 * 1000})
        assert await silence(ws, 0.1)
        await venue.control("POST", "/_sim/clock/advance", {"ms": 60 * 1000})
        assert (await next_event(ws))["e"] == "listenKeyExpired"
        assert srv.exchange.internal_errors == 0


def test_default_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRINDER_SIM_API_KEY", raising=False)
    monkeypatch.delenv("GRINDER_SIM_API_SECRET", raising=False)
    assert (SimConfig().api_key, SimConfig().api_secret) == (
        "grinder-sim-key",
        "grinder-sim-secret",
    )
    monkeypatch.setenv("GRINDER_SIM_API_KEY", "k2")
    monkeypatch.setenv("GRINDER_SIM_API_SECRET", "s2")
    server = SimulatorServer(port=0)
    assert (server.api_key, server.api_secret) == ("k2", "s2")
    assert SimulatorServer(api_key="k3", api_secret="s3").api_key == "k3"


async def test_single_order_reads_have_the_shape_of_real_ones(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    await venue.order(quantity="0.010", price="64000.0", newClientOrderId="q-1")
    query = await venue.call(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "q-1"}
    )
    # A 2023 log of allOrders (the same order object): it predates priceMatch, STP and GTD.
    logged = corpus("reallog_2023_GET_fapi_v1_allOrders_hedge.json")[0]
    newer = frozenset({"priceMatch", "selfTradePreventionMode", "goodTillDate"})
    assert shape_diff(query.data, logged, extra_ok=newer) == []
    one = await venue.call(
        "GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT", "origClientOrderId": "q-1"}
    )
    # That fixture writes every integer as a string; the keys are what it pins down.
    fixture = corpus("ccxt_fapi_v1_openOrder.json")
    as_strings = frozenset({"orderId", "time", "updateTime", "goodTillDate"})
    assert shape_diff(one.data, fixture, loose_types=as_strings) == []


async def test_new_algo_order_answer_has_the_shape_of_the_real_one(
    venue: Venue, corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    placed = await place_algo(venue, clientAlgoId="grinder_sl_2")
    response = corpus("nautilus_rs_futures_algo_order_response.json")
    # The answer to a new algo order has no actual* fields yet (nothing was triggered);
    # it names icebergQuantity and the STP mode, as Binance's own example does.
    assert (
        shape_diff(
            placed.data,
            response,
            absent_ok=frozenset({"actualOrderId", "actualPrice", "actualType", "actualQty"}),
            extra_ok=frozenset({"icebergQuantity", "selfTradePreventionMode"}),
        )
        == []
    )
