"""The Binance adapter (REST client, futures port, user-data stream) against the simulator.

Real HTTP and WebSocket over loopback; the simulator's control API injects
drift and faults.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.errors import (
    AuthError,
    IpBanned,
    OrderRejected,
    RateLimited,
    ServerError,
    UnknownOutcome,
)
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.parsing import AccountUpdate, OrderUpdate, OtherEvent, UserEvent
from grinder.exchange.binance.rest import BinanceRestClient, ClientClosing, RestSettings
from grinder.exchange.binance.stream import StreamSettings, StreamState, UserDataStream
from grinder.exchange.port import CancelOutcome, ExchangeError, TransientExchangeError
from grinder.exchange.simulator import SimConfig, SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.types import OrderStatus, PositionSide, Side
from tests.support.ids import ours

KEY, SECRET = "test-key", "test-secret"


class Sleeps:
    """Records what the client asked to wait, and waits only briefly."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    config = SimConfig(seed=3, walk_frozen=True, tick_interval_ms=50)
    server = SimulatorServer(
        port=0, api_key=KEY, api_secret=SECRET, symbols=["BTCUSDT", "ETHUSDT"], config=config
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sleeps() -> Sleeps:
    return Sleeps()


class ShiftedClock:
    """The real clock, ``offset_ms`` ahead: a test moves the client's time past a pause."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def rest(
    sim: SimulatorServer, sleeps: Sleeps, clock: ShiftedClock
) -> AsyncIterator[BinanceRestClient]:
    weights: list[int] = []
    client = BinanceRestClient(
        sim.base_url,
        Credentials(KEY, SECRET),
        settings=RestSettings(backoff_base_s=0.01, backoff_cap_s=0.05),
        sleep=sleeps,
        clock=clock,
        on_weight=weights.append,
    )
    client.weights_seen = weights  # type: ignore[attr-defined]
    yield client
    await client.close()


@pytest.fixture
def port(rest: BinanceRestClient) -> BinanceFuturesPort:
    return BinanceFuturesPort(rest)


@pytest.fixture
async def ctl(sim: SimulatorServer) -> AsyncIterator[SimControl]:
    async with SimControl(sim.base_url) as control:
        yield control


async def place_manual(
    ctl: SimControl,
    cid: str,
    symbol: str = "BTCUSDT",
    quantity: str = "0.002",
    price: str = "20000",
) -> Any:
    """A resting BUY as if placed by hand, by default 0.002 BTCUSDT @ 20000."""
    return await ctl.place_order(symbol, "BUY", quantity, price, cid)


# --- REST endpoints through the port ------------------------------------------------------


async def test_time_sync_and_exchange_info_give_step_sizes(
    rest: BinanceRestClient, port: BinanceFuturesPort
) -> None:
    offset = await rest.sync_time()
    assert abs(offset) < 1000
    assert await port.get_step_size("BTCUSDT") == Decimal("0.001")
    assert await port.get_step_size("NOPEUSDT") is None
    mark = await port.get_mark_price("BTCUSDT")
    assert mark is not None
    assert mark > 0


async def test_open_orders_query_and_cancel_by_client_order_id(
    ctl: SimControl, port: BinanceFuturesPort
) -> None:
    await place_manual(ctl, ours(1))
    await place_manual(ctl, ours(2, "ETHUSDT"), symbol="ETHUSDT", price="1000", quantity="0.050")
    every = await port.fetch_open_orders()
    assert sorted(o.client_order_id for o in every) == sorted([ours(1), ours(2, "ETHUSDT")])
    only_btc = await port.fetch_open_orders(["BTCUSDT"])
    assert [o.client_order_id for o in only_btc] == [ours(1)]
    found = await port.query_order("BTCUSDT", ours(1))
    assert found is not None
    assert found.status is OrderStatus.NEW
    assert found.qty == Decimal("0.002")
    assert await port.query_order("BTCUSDT", "grinder_d_BTCUSDT_1_1_999") is None
    assert await port.cancel_order("BTCUSDT", ours(1)) is CancelOutcome.CANCELED
    assert await port.cancel_order("BTCUSDT", ours(1)) is CancelOutcome.ALREADY_GONE
    ended = await port.query_order("BTCUSDT", ours(1))
    assert ended is not None
    assert ended.status is OrderStatus.CANCELED
    state = await ctl.call("GET", "/state")
    assert state["counters"]["writeRequests"] == 2


async def test_per_symbol_snapshot_costs_less_weight_than_all_symbols(
    rest: BinanceRestClient, port: BinanceFuturesPort
) -> None:
    await rest.request("GET", "/fapi/v1/ping")
    before = rest.used_weight
    await port.fetch_open_orders(["BTCUSDT"])
    per_symbol = rest.used_weight - before
    before = rest.used_weight
    await port.fetch_open_orders()
    all_symbols = rest.used_weight - before
    assert per_symbol == 2  # openOrders + openAlgoOrders, 1 each
    assert all_symbols == 80
    assert rest.weights_seen  # type: ignore[attr-defined]


async def test_flatten_one_way_position_with_reduce_only_market(
    ctl: SimControl, port: BinanceFuturesPort
) -> None:
    await ctl.call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "-0.004"})
    (pos,) = await port.fetch_positions()
    assert (pos.symbol, pos.qty, pos.position_side) == ("BTCUSDT", Decimal("-0.004"), "BOTH")
    filled = await port.place_reduce_only_market(
        "BTCUSDT",
        Side.BUY,
        Decimal("0.004"),
        position_side=PositionSide.BOTH,
        client_order_id="grinder_d_BTCUSDT_R_1800000000_1",
    )
    assert filled.status is OrderStatus.FILLED
    assert filled.reduce_only
    assert await port.fetch_positions() == []
    with pytest.raises(OrderRejected) as err:
        await port.place_reduce_only_market(
            "BTCUSDT",
            Side.BUY,
            Decimal("0.001"),
            position_side=PositionSide.BOTH,
            client_order_id="grinder_d_BTCUSDT_R_1800000000_2",
        )
    assert err.value.code == -2022


async def test_flatten_in_hedge_mode_sends_position_side(
    ctl: SimControl, port: BinanceFuturesPort
) -> None:
    await ctl.call("POST", "/position-mode", {"dualSidePosition": True})
    assert await port.hedge_mode(refresh=True) is True
    await ctl.call(
        "POST",
        "/positions",
        {"symbol": "ETHUSDT", "quantity": "0.100", "positionSide": "LONG"},
    )
    (pos,) = await port.fetch_positions(["ETHUSDT"])
    assert pos.position_side is PositionSide.LONG
    await port.place_reduce_only_market(
        "ETHUSDT",
        Side.SELL,
        Decimal("0.100"),
        position_side=PositionSide.LONG,
        client_order_id="grinder_d_ETHUSDT_R_1800000000_1",
    )
    assert await port.fetch_positions(["ETHUSDT"]) == []


async def test_algo_orders_are_part_of_the_open_order_picture_and_cancel_on_their_endpoint(
    ctl: SimControl, port: BinanceFuturesPort
) -> None:
    await ctl.call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "0.002"})
    cid = "grinder_d_BTCUSDT_S_1800000000_1"
    await ctl.call(
        "POST",
        "/algo-orders",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "algoType": "CONDITIONAL",
            "quantity": "0.002",
            "triggerPrice": "10000",
            "reduceOnly": "true",
            "clientAlgoId": cid,
        },
    )
    orders = await port.fetch_open_orders(["BTCUSDT"])
    algo = [o for o in orders if o.is_algo]
    assert [o.client_order_id for o in algo] == [cid]
    queried = await port.query_order("BTCUSDT", cid, is_algo=True)
    assert queried is not None
    assert queried.status is OrderStatus.NEW
    assert await port.cancel_order("BTCUSDT", cid, is_algo=True) is CancelOutcome.CANCELED
    assert [o for o in await port.fetch_open_orders(["BTCUSDT"]) if o.is_algo] == []


# --- faults -------------------------------------------------------------------------------


async def test_429_is_waited_out_with_retry_after_then_succeeds(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort, sleeps: Sleeps
) -> None:
    await ctl.call("POST", "/faults/rate-limit", {"count": 1})
    assert await port.fetch_positions() == []
    assert len(sleeps.waits) == 1
    assert 0 < sleeps.waits[0] <= 60


async def test_after_a_429_every_request_of_the_client_waits_out_the_pause(
    ctl: SimControl,
    rest: BinanceRestClient,
    port: BinanceFuturesPort,
    sleeps: Sleeps,
    clock: ShiftedClock,
) -> None:
    await ctl.call("POST", "/faults/rate-limit", {"count": 1})
    assert await port.fetch_positions() == []
    assert len(sleeps.waits) == 1
    pause = sleeps.waits[0]
    assert pause > 0
    # Other requests before the pause is over (on the client's clock) wait too: the
    # snapshot's two calls (regular and algo orders).
    assert await port.fetch_open_orders(["BTCUSDT"]) == []
    assert len(sleeps.waits) == 3
    assert all(0 < wait <= pause for wait in sleeps.waits[1:])
    clock.offset_ms = int(pause * 1000) + 1  # the pause is over: no more waiting
    assert await port.fetch_open_orders(["BTCUSDT"]) == []
    assert len(sleeps.waits) == 3


async def test_418_ban_is_raised_not_retried(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort
) -> None:
    await ctl.call("POST", "/faults/ban", {"seconds": 120})
    sent = rest.requests_sent
    with pytest.raises(IpBanned) as err:
        await port.fetch_positions()
    assert rest.requests_sent == sent + 1
    assert err.value.retry_after_s == pytest.approx(120, abs=2)


async def test_after_a_418_nothing_is_sent_until_the_ban_ends(
    ctl: SimControl,
    rest: BinanceRestClient,
    port: BinanceFuturesPort,
    sleeps: Sleeps,
    clock: ShiftedClock,
) -> None:
    await ctl.call("POST", "/faults/ban", {"seconds": 120})
    with pytest.raises(IpBanned):
        await port.fetch_positions()
    assert rest.requests_sent == 1
    assert rest.ban_remaining_s() == pytest.approx(120, abs=2)
    for _ in range(3):  # every later call fails here, without touching the network
        with pytest.raises(IpBanned) as err:
            await port.fetch_open_orders(["BTCUSDT"])
        assert "not sent" in str(err.value)
        assert err.value.retry_after_s is not None
        assert 100 < err.value.retry_after_s <= 120
    assert rest.requests_sent == 1
    clock.offset_ms = 121_000  # the ban is over (on the client's clock)
    assert rest.ban_remaining_s() == 0
    with pytest.raises(ExchangeError):
        await port.fetch_positions()  # the simulator (on its own clock) still refuses
    assert rest.requests_sent == 2


async def test_a_banned_stream_waits_for_the_ban_before_reconnecting(
    ctl: SimControl, rest: BinanceRestClient, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    await ctl.call("POST", "/faults/ban", {"seconds": 120})
    with pytest.raises(IpBanned):
        await rest.request("GET", "/fapi/v1/time")
    caplog.set_level(logging.INFO, logger="grinder.exchange.stream")
    rig = StreamRig(rest, sim)
    try:
        await rig.wait(lambda: "STREAM_RECONNECT" in caplog.text)
        line = next(r.getMessage() for r in caplog.records if "STREAM_RECONNECT" in r.getMessage())
        assert float(line.split("in_s=")[1].split()[0]) > 100
        assert rest.requests_sent == 1  # no listenKey request while banned
    finally:
        await rig.close()


async def test_5xx_on_a_read_is_retried_with_backoff(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort, sleeps: Sleeps
) -> None:
    await ctl.call(
        "POST",
        "/faults/errors",
        {"count": 2, "status": 503, "paths": ["/fapi/v3/positionRisk"]},
    )
    sent = rest.requests_sent
    assert await port.fetch_positions() == []
    assert rest.requests_sent == sent + 3
    assert len(sleeps.waits) == 2
    assert all(0 < w <= 0.05 for w in sleeps.waits)


async def test_5xx_on_a_new_order_is_not_repeated_blindly(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort
) -> None:
    await ctl.call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "0.002"})
    await ctl.call(
        "POST",
        "/faults/errors",
        {
            "count": 1,
            "status": 503,
            "paths": ["/fapi/v1/order"],
            "methods": ["POST"],
            "apply": True,
        },
    )
    with pytest.raises(TransientExchangeError):
        await port.place_reduce_only_market(
            "BTCUSDT",
            Side.SELL,
            Decimal("0.002"),
            position_side=PositionSide.BOTH,
            client_order_id="grinder_d_BTCUSDT_R_1800000000_9",
        )
    state = await ctl.call("GET", "/state")
    assert state["counters"]["writeRequests"] == 1
    # The order was executed although the answer was an error: re-reading shows it.
    assert await port.fetch_positions() == []


async def test_timestamp_outside_recv_window_resyncs_time_and_retries(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort
) -> None:
    await rest.sync_time()
    await ctl.call("POST", "/faults/clock-skew", {"offsetMs": 30_000})
    assert await port.fetch_positions() == []
    assert rest.time_offset_ms == pytest.approx(30_000, abs=1000)


async def test_wrong_secret_is_an_auth_error(sim: SimulatorServer) -> None:
    client = BinanceRestClient(sim.base_url, Credentials(KEY, "s3cr3t-value-xyz"))
    try:
        with pytest.raises(AuthError) as err:
            await BinanceFuturesPort(client).fetch_positions()
        assert err.value.code == -1022
        assert "s3cr3t-value-xyz" not in str(err.value)
    finally:
        await client.close()


async def test_server_error_surfaces_after_retries_are_spent(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort
) -> None:
    await ctl.call(
        "POST",
        "/faults/errors",
        {"count": 10, "status": 500, "paths": ["/fapi/v3/positionRisk"]},
    )
    with pytest.raises(ServerError):
        await port.fetch_positions()


# --- the user-data stream -----------------------------------------------------------------


class StreamRig:
    def __init__(
        self,
        rest: BinanceRestClient,
        sim: SimulatorServer,
        settings: StreamSettings | None = None,
    ) -> None:
        self.events: list[UserEvent] = []
        self.resyncs = 0
        self.stream = UserDataStream(
            rest,
            sim.ws_base_url,
            on_event=self.events.append,
            on_resync=self.resync,
            settings=settings
            or StreamSettings(backoff_base_s=0.01, backoff_cap_s=0.05, keepalive_s=3600),
        )
        self.task = asyncio.create_task(self.stream.run())

    async def resync(self) -> None:
        self.resyncs += 1

    async def wait(self, predicate: Callable[[], bool], timeout_s: float = 5) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not predicate():
            assert loop.time() < end, "condition not reached"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.stream.stop()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def stream_rig(rest: BinanceRestClient, sim: SimulatorServer) -> AsyncIterator[StreamRig]:
    rig = StreamRig(rest, sim)
    assert await rig.stream.wait_live(5)
    yield rig
    await rig.close()


def order_updates(events: list[UserEvent], cid: str) -> list[OrderStatus]:
    return [
        e.order.status
        for e in events
        if isinstance(e, OrderUpdate) and e.order.client_order_id == cid
    ]


async def test_stream_delivers_order_and_account_events(
    ctl: SimControl, stream_rig: StreamRig
) -> None:
    assert stream_rig.resyncs == 1
    await place_manual(ctl, ours(5))
    await ctl.call("POST", "/orders/fill", {"clientOrderId": ours(5)})
    await stream_rig.wait(lambda: OrderStatus.FILLED in order_updates(stream_rig.events, ours(5)))
    assert order_updates(stream_rig.events, ours(5)) == [OrderStatus.NEW, OrderStatus.FILLED]
    await stream_rig.wait(lambda: any(isinstance(e, AccountUpdate) for e in stream_rig.events))


async def test_dropped_socket_reconnects_and_resyncs_before_trusting_events(
    ctl: SimControl, stream_rig: StreamRig
) -> None:
    await ctl.call("POST", "/ws/drop", {"mode": "abort"})
    await stream_rig.wait(lambda: stream_rig.resyncs == 2)
    await stream_rig.wait(lambda: stream_rig.stream.state is StreamState.LIVE)
    assert stream_rig.stream.stats.reconnects >= 1
    await place_manual(ctl, ours(6))
    await stream_rig.wait(lambda: order_updates(stream_rig.events, ours(6)) == [OrderStatus.NEW])


async def test_listen_key_expiry_recovers_with_a_new_key(
    ctl: SimControl, stream_rig: StreamRig
) -> None:
    first_key = stream_rig.stream.listen_key
    await ctl.call("POST", "/listen-keys/expire", {})
    await stream_rig.wait(lambda: stream_rig.resyncs == 2)
    await stream_rig.wait(lambda: stream_rig.stream.state is StreamState.LIVE)
    assert stream_rig.stream.listen_key not in (None, first_key)
    assert stream_rig.stream.stats.listen_keys_created == 2
    await place_manual(ctl, ours(7))
    await stream_rig.wait(lambda: order_updates(stream_rig.events, ours(7)) == [OrderStatus.NEW])


async def test_garbled_frame_is_counted_and_survived(
    ctl: SimControl, stream_rig: StreamRig
) -> None:
    await ctl.call("POST", "/ws/raw", {"text": '{"e":"ORDER_TRADE_UPDATE","o":{"s":'})
    await ctl.call("POST", "/ws/raw", {"text": "\x00not json at all"})
    await place_manual(ctl, ours(8))
    await stream_rig.wait(lambda: order_updates(stream_rig.events, ours(8)) == [OrderStatus.NEW])
    assert stream_rig.stream.stats.parse_errors == 2
    assert stream_rig.stream.state is StreamState.LIVE
    assert stream_rig.resyncs == 1


async def test_events_during_resync_are_delivered_after_it(
    rest: BinanceRestClient, sim: SimulatorServer, ctl: SimControl
) -> None:
    events: list[UserEvent] = []
    order_at_resync: list[int] = []
    gate = asyncio.Event()

    async def slow_resync() -> None:
        order_at_resync.append(len(events))
        await place_manual(ctl, ours(9))  # an event arrives while the snapshot runs
        await asyncio.sleep(0.2)
        order_at_resync.append(len(events))
        gate.set()

    stream = UserDataStream(rest, sim.ws_base_url, on_event=events.append, on_resync=slow_resync)
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.wait_for(gate.wait(), 5)
        assert await stream.wait_live(5)
        for _ in range(100):
            if order_updates(events, ours(9)):
                break
            await asyncio.sleep(0.02)
        assert order_at_resync == [0, 0]  # nothing delivered before the snapshot was in
        assert order_updates(events, ours(9)) == [OrderStatus.NEW]
    finally:
        await stream.stop()
        await asyncio.wait_for(task, 5)


class RecordingRest(BinanceRestClient):
    """The real client, noting the method and path of every request it is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append((method, path))
        return await super().request(method, path, *args, **kwargs)


async def test_listen_key_kept_alive_while_connected_and_closed_on_stop(
    sim: SimulatorServer,
) -> None:
    rest = RecordingRest(sim.base_url, Credentials(KEY, SECRET))
    settings = StreamSettings(backoff_base_s=0.01, backoff_cap_s=0.05, keepalive_s=0.1)
    rig = StreamRig(rest, sim, settings)
    try:
        assert await rig.stream.wait_live(5)
        await rig.wait(lambda: rest.asked.count(("PUT", "/fapi/v1/listenKey")) >= 2)
        assert rig.stream.state is StreamState.LIVE
    finally:
        await rig.close()
        await rest.close()
    assert rest.asked.count(("POST", "/fapi/v1/listenKey")) == 1
    assert rest.asked[-1] == ("DELETE", "/fapi/v1/listenKey")


async def test_connection_recycled_before_binance_closes_it_then_resynced(
    rest: BinanceRestClient, sim: SimulatorServer, ctl: SimControl
) -> None:
    settings = StreamSettings(backoff_base_s=0.01, backoff_cap_s=0.05, max_connection_s=0.3)
    rig = StreamRig(rest, sim, settings)
    try:
        await rig.wait(lambda: rig.stream.stats.connections >= 3)
        await rig.wait(lambda: rig.stream.state is StreamState.LIVE)
        assert rig.resyncs >= 2  # every new connection is resynced before it is trusted
    finally:
        await rig.close()


async def test_other_event_types_are_counted_and_handed_on(
    ctl: SimControl, stream_rig: StreamRig, corpus: Callable[[str], Any]
) -> None:
    margin_call = corpus("docs_MARGIN_CALL.json")
    await ctl.call("POST", "/ws/raw", {"text": json.dumps(margin_call)})
    await stream_rig.wait(lambda: stream_rig.stream.stats.events.get("MARGIN_CALL") == 1)
    other = [e for e in stream_rig.events if isinstance(e, OtherEvent)]
    assert [e.event_type for e in other] == ["MARGIN_CALL"]
    assert other[0].payload == margin_call
    assert stream_rig.stream.stats.parse_errors == 0


async def test_a_timed_out_read_is_retried_and_a_timed_out_write_is_not(
    ctl: SimControl, sim: SimulatorServer, sleeps: Sleeps
) -> None:
    client = BinanceRestClient(
        sim.base_url,
        Credentials(KEY, SECRET),
        settings=RestSettings(timeout_s=0.2, backoff_base_s=0.01, backoff_cap_s=0.05),
        sleep=sleeps,
    )
    port = BinanceFuturesPort(client)
    try:
        await ctl.call("POST", "/faults/latency", {"restMs": 600})
        with pytest.raises(TransientExchangeError, match="timed out"):
            await port.fetch_positions()
        assert client.requests_sent == 1 + client.settings.max_retries
        sent = client.requests_sent
        with pytest.raises(UnknownOutcome, match="timed out"):
            await port.place_reduce_only_market(
                "BTCUSDT",
                Side.SELL,
                Decimal("0.002"),
                position_side=PositionSide.BOTH,
                client_order_id=ours(11),
            )
        assert client.requests_sent == sent + 1  # may have been executed: never re-sent
        await ctl.call("POST", "/faults/latency", {"restMs": 0})
        assert await port.fetch_positions() == []
    finally:
        await client.close()


async def test_an_order_write_is_never_held_back_by_a_429_pause_nor_repeated_after_one(
    ctl: SimControl, rest: BinanceRestClient, port: BinanceFuturesPort, sleeps: Sleeps
) -> None:
    """A write that waited out a pause would go out on a decision up to a minute old (an
    operator's rollback meanwhile unseen): it fails at once instead, and the next run decides."""
    await ctl.call("POST", "/faults/rate-limit", {"count": 1})
    with pytest.raises(RateLimited):  # a 429 on the cancel itself: not repeated
        await port.cancel_order("BTCUSDT", ours(21))
    assert rest.requests_sent == 1
    for attempt in (
        port.cancel_order("BTCUSDT", ours(21)),
        port.place_reduce_only_market(
            "BTCUSDT",
            Side.SELL,
            Decimal("0.002"),
            position_side=PositionSide.BOTH,
            client_order_id=ours(22),
        ),
    ):
        with pytest.raises(RateLimited, match="not sent"):
            await attempt
    assert rest.requests_sent == 1
    assert sleeps.waits == []  # nothing waited


async def test_the_last_429_of_a_read_still_pauses_the_client(
    ctl: SimControl, sim: SimulatorServer, sleeps: Sleeps
) -> None:
    client = BinanceRestClient(
        sim.base_url, Credentials(KEY, SECRET), settings=RestSettings(max_retries=0), sleep=sleeps
    )
    port = BinanceFuturesPort(client)
    try:
        await ctl.call("POST", "/faults/rate-limit", {"count": 1})
        with pytest.raises(RateLimited):
            await port.fetch_positions()  # no retry left: raised
        assert sleeps.waits == []
        assert await port.fetch_positions() == []  # the next one waits the pause out first
        assert len(sleeps.waits) == 1
    finally:
        await client.close()


# --- the stop: no wait outlasts it ------------------------------------------------------------


async def started_waiting(client: BinanceRestClient, work: Any) -> asyncio.Task[Any]:
    """``work`` as a task, returned once the client waits inside it."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    end = loop.time() + 5
    while not client._waits:
        assert not task.done(), task
        assert loop.time() < end, "the client never waited"
        await asyncio.sleep(0.01)
    return task


async def cut_short(client: BinanceRestClient, task: asyncio.Task[Any]) -> ClientClosing:
    """``begin_close``, then the task's ``ClientClosing``, raised at once."""
    started = time.monotonic()
    client.begin_close()
    with pytest.raises(ClientClosing) as caught:
        await asyncio.wait_for(task, 1)
    assert time.monotonic() - started < 0.5
    return caught.value


async def test_the_stop_ends_a_429_pause_and_no_request_waits_after_it(
    ctl: SimControl, sim: SimulatorServer
) -> None:
    client = BinanceRestClient(sim.base_url, Credentials(KEY, SECRET))
    port = BinanceFuturesPort(client)
    try:
        await ctl.call("POST", "/faults/rate-limit", {"count": 1, "retryAfter": 60})
        task = await started_waiting(client, port.fetch_positions())
        assert 55 < client.wait_needed_s() <= 60
        error = await cut_short(client, task)
        assert "after a 429" in str(error)
        assert not error.outcome_unknown
        assert client.requests_sent == 1
        with pytest.raises(ClientClosing, match="not sent"):  # still paused: fails at once
            await port.fetch_open_orders(["BTCUSDT"])
        assert client.requests_sent == 1
    finally:
        await client.close()


async def test_the_stop_ends_the_wait_for_the_next_weight_window(
    ctl: SimControl, sim: SimulatorServer
) -> None:
    # Server time a second into its minute: the next window is ~59 s away.
    skew = 1_000 - int(time.time() * 1000) % 60_000
    await ctl.call("POST", "/faults/clock-skew", {"offsetMs": skew})
    client = BinanceRestClient(sim.base_url, Credentials(KEY, SECRET))
    port = BinanceFuturesPort(client)
    try:
        await client.sync_time()
        await ctl.call("POST", "/faults/weight", {"usedWeight1m": 2300})
        await port.fetch_positions()  # its answer says the IP is near the limit
        assert client.wait_needed_s(5) > 50
        sent = client.requests_sent
        task = await started_waiting(client, port.fetch_positions())
        assert "weight window" in str(await cut_short(client, task))
        assert client.requests_sent == sent
    finally:
        await client.close()


async def test_the_stop_cuts_a_retry_backoff_short_and_keeps_the_failure_before_it(
    ctl: SimControl, sim: SimulatorServer
) -> None:
    client = BinanceRestClient(
        sim.base_url,
        Credentials(KEY, SECRET),
        settings=RestSettings(backoff_base_s=30, backoff_cap_s=60),
    )
    port = BinanceFuturesPort(client)
    try:
        await ctl.call("POST", "/faults/errors", {"count": 10, "status": 500})
        task = await started_waiting(client, port.fetch_positions())
        error = await cut_short(client, task)
        assert "before a retry" in str(error)
        assert isinstance(error.__context__, ServerError)
        assert client.requests_sent == 1
    finally:
        await client.close()


async def test_the_stream_stop_is_bounded_when_the_listen_key_close_hangs(
    ctl: SimControl, stream_rig: StreamRig, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    await ctl.call(
        "POST",
        "/faults/latency",
        {"restMs": 60_000, "methods": ["DELETE"], "paths": ["/fapi/v1/listenKey"]},
    )
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="grinder.exchange.stream"):
        await stream_rig.stream.stop(0.5)
    assert time.monotonic() - started < 0.8
    assert stream_rig.task.done()
    assert sim.exchange.requests["DELETE /fapi/v1/listenKey"] == 1  # sent, never answered
    assert "STREAM_LISTEN_KEY_NOT_CLOSED reason=timeout" in caplog.text


async def test_the_stream_stop_never_waits_out_a_429_pause_to_close_the_listen_key(
    ctl: SimControl, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = BinanceRestClient(
        sim.base_url, Credentials(KEY, SECRET), settings=RestSettings(max_retries=0)
    )
    rig = StreamRig(client, sim)
    try:
        assert await rig.stream.wait_live(5)
        await ctl.call("POST", "/faults/rate-limit", {"count": 1, "retryAfter": 60})
        with pytest.raises(RateLimited):
            await client.sync_time()  # the client is now paused for 60 s
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="grinder.exchange.stream"):
            await rig.stream.stop(2.0)
        assert time.monotonic() - started < 0.5
        assert rig.task.done()
        assert sim.exchange.requests["DELETE /fapi/v1/listenKey"] == 0
        assert "STREAM_LISTEN_KEY_NOT_CLOSED reason=rate_limited" in caplog.text
    finally:
        await client.close()
