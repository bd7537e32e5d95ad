"""One user-data stream connection against the simulator, over real HTTP and WebSocket: what
ends it before or after its snapshot, and what it delivers then.

The stream's promise: a connection's events reach ``on_event`` only once its snapshot is in;
a connection whose snapshot failed, or whose socket ended before the snapshot was in, is
never trusted (never LIVE, its held events dropped: the next connection's snapshot covers
them); a keepalive refused with -1125 ends the connection, and the next one has a new key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from grinder.exchange.binance.parsing import OrderUpdate, UserEvent
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.binance.stream import StreamSettings, StreamState, UserDataStream
from grinder.exchange.port import ExchangeError
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from tests.support.ids import ours
from tests.support.simulator_in_process import frozen_simulator, signed_rest, sim_control
from tests.support.wait import wait_until_async

KEY, SECRET = "stream-key", "stream-secret"
FAST = StreamSettings(backoff_base_s=0.01, backoff_cap_s=0.05, keepalive_s=3600)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with frozen_simulator(KEY, SECRET, seed=11) as server:
        yield server


@pytest.fixture
async def rest(sim: SimulatorServer) -> AsyncIterator[BinanceRestClient]:
    async with signed_rest(sim, KEY, SECRET) as client:
        yield client


@pytest.fixture
async def ctl(sim: SimulatorServer) -> AsyncIterator[SimControl]:
    async with sim_control(sim) as control:
        yield control


class Consumer:
    """A stream over ``rest`` and what it handed on: its events, its states in order, and
    how often its snapshot was asked for. ``snapshot(n)`` is the n-th snapshot (from 1)."""

    def __init__(
        self,
        rest: BinanceRestClient,
        sim: SimulatorServer,
        snapshot: Callable[[int], Awaitable[None]],
        settings: StreamSettings = FAST,
    ) -> None:
        self.events: list[UserEvent] = []
        self.states: list[StreamState] = []
        self.snapshots = 0
        self._snapshot = snapshot
        self.stream = UserDataStream(
            rest,
            sim.ws_base_url,
            on_event=self.events.append,
            on_resync=self.resync,
            on_state=self.states.append,
            settings=settings,
        )
        self.task = asyncio.create_task(self.stream.run())

    async def resync(self) -> None:
        self.snapshots += 1
        await self._snapshot(self.snapshots)

    def orders(self, cid: str) -> list[str]:
        return [
            e.order.status.value
            for e in self.events
            if isinstance(e, OrderUpdate) and e.order.client_order_id == cid
        ]

    def states_until_second_connection(self) -> list[StreamState]:
        second = [i for i, s in enumerate(self.states) if s is StreamState.CONNECTING][1]
        return self.states[:second]

    async def close(self) -> None:
        await self.stream.stop()
        await asyncio.wait_for(self.task, 5)


async def snapshot_ok(n: int) -> None:
    return None


async def place(ctl: SimControl, cid: str) -> None:
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)


def held_events(consumer: Consumer) -> int:
    """Events the stream received (counted on arrival, delivered or held)."""
    return sum(consumer.stream.stats.events.values())


async def test_a_failed_snapshot_is_never_trusted_and_the_events_it_held_are_dropped(
    rest: BinanceRestClient, sim: SimulatorServer, ctl: SimControl
) -> None:
    consumer: Consumer

    async def snapshot(n: int) -> None:
        if n == 1:
            await place(ctl, ours(31))  # its event arrives while this snapshot runs
            await wait_until_async(lambda: held_events(consumer) >= 1, "the event held")
            raise ExchangeError("the snapshot failed")

    consumer = Consumer(rest, sim, snapshot)
    try:
        assert await consumer.stream.wait_live(10)
        assert consumer.states_until_second_connection() == [
            StreamState.CONNECTING,
            StreamState.RESYNCING,
            StreamState.DISCONNECTED,
        ]
        assert (consumer.snapshots, consumer.stream.stats.resyncs) == (2, 1)
        await place(ctl, ours(32))
        await wait_until_async(lambda: consumer.orders(ours(32)) == ["NEW"], "the later order")
        assert consumer.orders(ours(31)) == []  # held by the untrusted connection, dropped
    finally:
        await consumer.close()


async def test_a_socket_lost_during_the_snapshot_cancels_it_and_the_next_connection_resyncs(
    rest: BinanceRestClient, sim: SimulatorServer, ctl: SimControl
) -> None:
    cancelled: list[int] = []
    consumer: Consumer

    async def snapshot(n: int) -> None:
        if n == 1:
            await place(ctl, ours(33))
            await wait_until_async(lambda: held_events(consumer) >= 1, "the event held")
            await ctl.call("POST", "/ws/drop", {"mode": "abort"})
            try:
                await asyncio.Event().wait()  # a snapshot that would never end
            except asyncio.CancelledError:
                cancelled.append(n)
                raise

    consumer = Consumer(rest, sim, snapshot)
    try:
        assert await consumer.stream.wait_live(10)
        assert cancelled == [1]
        assert consumer.states_until_second_connection() == [
            StreamState.CONNECTING,
            StreamState.RESYNCING,
            StreamState.DISCONNECTED,
        ]
        assert (consumer.snapshots, consumer.stream.stats.resyncs) == (2, 1)
        await place(ctl, ours(34))
        await wait_until_async(lambda: consumer.orders(ours(34)) == ["NEW"], "the later order")
        assert consumer.orders(ours(33)) == []
    finally:
        await consumer.close()


async def test_a_keepalive_refused_with_1125_ends_the_connection_and_a_new_key_is_made(
    rest: BinanceRestClient, sim: SimulatorServer, ctl: SimControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grinder.exchange.stream")
    settings = StreamSettings(backoff_base_s=0.01, backoff_cap_s=0.05, keepalive_s=0.1)
    consumer = Consumer(rest, sim, snapshot_ok, settings)
    try:
        assert await consumer.stream.wait_live(10)
        first_key = consumer.stream.listen_key
        # The key is gone on the venue and the socket was not told (its expiry event lost).
        sim.exchange.hub.keys.clear()
        await wait_until_async(
            lambda: consumer.snapshots == 2 and consumer.stream.state is StreamState.LIVE,
            "live again on a second connection",
        )
        assert "STREAM_LISTEN_KEY_INVALID" in caplog.text
        assert consumer.stream.stats.listen_keys_created == 2
        assert consumer.stream.listen_key not in (None, first_key)
        await place(ctl, ours(35))
        await wait_until_async(lambda: consumer.orders(ours(35)) == ["NEW"], "an order's event")
    finally:
        await consumer.close()


async def test_a_listen_key_expiry_is_handed_on_and_logged_as_the_reason_for_the_close(
    rest: BinanceRestClient, sim: SimulatorServer, ctl: SimControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grinder.exchange.stream")
    consumer = Consumer(rest, sim, snapshot_ok)
    try:
        assert await consumer.stream.wait_live(10)
        await ctl.call("POST", "/listen-keys/expire", {})
        await wait_until_async(
            lambda: "STREAM_CLOSED reason=listen_key_expired" in caplog.text, "the close logged"
        )
        assert [e.event_type for e in consumer.events] == ["listenKeyExpired"]
        await wait_until_async(lambda: consumer.snapshots == 2, "a second connection")
    finally:
        await consumer.close()
