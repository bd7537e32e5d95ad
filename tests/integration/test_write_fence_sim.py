"""Remediation writes authorized at the wire, against the simulator over real HTTP.

What reaches the venue is read from the simulator's own write log (every write it
received, with the API key that sent it and the answer it gave), never from the
client's idea of what it sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from grinder.budget.tracker import BudgetTracker
from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.errors import ServerError, TimestampError, UnknownOutcome
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.port import CancelOutcome, WriteWithheld
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import AttemptOutcome, BlockReason, ResultStatus, SkipReason
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import (
    ExpectedOrder,
    Mismatch,
    MismatchType,
    OrderStatus,
    PositionSide,
    Side,
)
from grinder.reconcile.write_window import WRITE_WINDOW_MS
from grinder.remediation.executor import RemediationExecutor
from tests.support.ids import ours
from tests.support.simulator_in_process import frozen_simulator, signed_rest, sim_control

KEY, SECRET = "fence-key", "fence-secret"
OTHER_KEY, OTHER_SECRET = "fence-key-2", "fence-secret-2"
DELETE = "/fapi/v1/order"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with frozen_simulator(KEY, SECRET, seed=5, more_keys={OTHER_KEY: OTHER_SECRET}) as s:
        yield s


@pytest.fixture
async def ctl(sim: SimulatorServer) -> AsyncIterator[SimControl]:
    async with sim_control(sim) as control:
        yield control


@pytest.fixture
async def rest(sim: SimulatorServer) -> AsyncIterator[BinanceRestClient]:
    async with signed_rest(sim, KEY, SECRET) as client:
        yield client


async def writes(ctl: SimControl, api_key: str | None = None) -> list[dict[str, Any]]:
    path = "/writes" + (f"?apiKey={api_key}" if api_key else "")
    body = await ctl.call("GET", path)
    out: list[dict[str, Any]] = body["writes"]
    return out


async def open_ids(ctl: SimControl) -> set[str]:
    state = await ctl.state()
    return {o["clientOrderId"] for o in state["orders"]}


async def burst(ctl: SimControl, count: int, status: int = 503) -> None:
    await ctl.call(
        "POST",
        "/faults/errors",
        {"count": count, "status": status, "paths": [DELETE], "methods": ["DELETE"]},
    )


# --- the client: one request per write, the window as recvWindow ---------------------------


async def test_a_cancel_answered_503_reaches_the_venue_once(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(1)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await burst(ctl, 10)
    port = BinanceFuturesPort(rest)
    with pytest.raises(UnknownOutcome):  # 503 "Unknown error": it may have been executed
        await port.cancel_order("BTCUSDT", cid)
    sent = await writes(ctl)
    assert [(w["method"], w["clientOrderId"], w["status"]) for w in sent] == [("DELETE", cid, 503)]
    assert sent[0]["apiKey"] == KEY


async def test_a_withheld_write_never_reaches_the_venue(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(2)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)

    def refuse() -> int:
        raise WriteWithheld(BlockReason.NOT_LEADER, "deposed")

    port = BinanceFuturesPort(rest)
    spent, sent = rest.weight_spent, rest.requests_sent
    with pytest.raises(WriteWithheld):
        await port.cancel_order("BTCUSDT", cid, authorize=refuse)
    with pytest.raises(WriteWithheld):
        await port.place_reduce_only_market(
            "BTCUSDT",
            Side.SELL,
            Decimal("0.001"),
            position_side=PositionSide.BOTH,
            client_order_id=ours(3),
            authorize=refuse,
        )
    assert await writes(ctl) == []
    assert (rest.weight_spent, rest.requests_sent) == (spent, sent)  # nothing went out
    assert cid in await open_ids(ctl)


async def test_a_write_arriving_after_its_window_is_refused_by_the_venue(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    """The granted window is the request's recvWindow: held up longer, it is not executed."""
    cid = ours(4)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await ctl.call("POST", "/faults/latency", {"restMs": 400})
    port = BinanceFuturesPort(rest)
    with pytest.raises(TimestampError):
        await port.cancel_order("BTCUSDT", cid, authorize=lambda: 150)
    assert cid in await open_ids(ctl)
    (late,) = await writes(ctl)
    assert (late["status"], late["code"]) == (400, -1021)
    # The same delay inside a wider window is executed.
    assert await port.cancel_order("BTCUSDT", cid, authorize=lambda: 1500) is (
        CancelOutcome.CANCELED
    )
    assert cid not in await open_ids(ctl)


async def test_the_write_log_names_the_api_key_of_each_write(
    sim: SimulatorServer, ctl: SimControl
) -> None:
    cids = [ours(5), ours(6)]
    for cid in cids:
        await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    for (key, secret), cid in zip(((KEY, SECRET), (OTHER_KEY, OTHER_SECRET)), cids, strict=True):
        async with BinanceRestClient(sim.base_url, Credentials(key, secret)) as client:
            await client.sync_time()
            await BinanceFuturesPort(client).cancel_order("BTCUSDT", cid)
    assert [(w["apiKey"], w["clientOrderId"]) for w in await writes(ctl)] == [
        (KEY, cids[0]),
        (OTHER_KEY, cids[1]),
    ]
    assert [w["clientOrderId"] for w in await writes(ctl, OTHER_KEY)] == [cids[1]]


# --- the executor: bounded attempts, each authorized --------------------------------------


class Bot:
    """The bot's expected orders as the executor reads them at the wire."""

    def __init__(self) -> None:
        self.orders: dict[str, ExpectedOrder] = {}
        self.reads = 0

    def read(self, cid: str) -> ExpectedOrder | None:
        self.reads += 1
        return self.orders.get(cid)

    def record(self, cid: str) -> None:
        self.orders[cid] = ExpectedOrder(
            client_order_id=cid,
            symbol="BTCUSDT",
            side=Side.BUY,
            qty=Decimal("0.002"),
            price=Decimal("20000"),
            status=OrderStatus.NEW,
            created_ts_ms=0,
            updated_ts_ms=0,
        )


def live_executor(
    port: BinanceFuturesPort,
    bot: Bot,
    *,
    lease_window_ms: Any = None,
    sleep: Any = None,
) -> RemediationExecutor:
    config = ReconcileConfig(
        action=RemediationAction.FLATTEN,
        dry_run=False,
        allow_active_remediation=True,
        symbol_whitelist=("BTCUSDT",),
        cooldown_seconds=0,
    )

    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    return RemediationExecutor(
        config=config,
        port=port,
        armed=True,
        budget=BudgetTracker(config=config),
        env={"ALLOW_MAINNET_TRADE": "1"},
        read_expected_order=bot.read,
        expected_heartbeat_age=lambda: 0.0,  # gate E open: the bot is live
        lease_window_ms=lease_window_ms,
        sleep=sleep or no_wait,
    )


def cancel_routed(cid: str) -> Routed:
    m = Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol="BTCUSDT",
        client_order_id=cid,
        observed_status="NEW",
    )
    return Routed(m, ActionKind.CANCEL, 10)


async def test_one_cancel_reaches_the_venue_at_most_three_times_in_a_5xx_storm(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(7)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await burst(ctl, 1000, status=502)
    bot = Bot()
    ex = live_executor(BinanceFuturesPort(rest), bot)
    result = await ex.execute(cancel_routed(cid), ex.begin_run())
    assert result.status is ResultStatus.FAILED
    assert result.attempts == (AttemptOutcome.REJECTED,) * 3
    assert len(await writes(ctl)) == 3
    assert ex.budget.state.calls_used_day == 1  # the budget counts actions, not attempts
    assert bot.reads == 3  # each attempt confirmed against the bot's state


async def test_a_cancel_retried_after_a_503_succeeds_within_its_attempts(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(8)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await burst(ctl, 2, status=503)
    ex = live_executor(BinanceFuturesPort(rest), Bot())
    result = await ex.execute(cancel_routed(cid), ex.begin_run())
    assert result.status is ResultStatus.EXECUTED
    assert result.attempts == (
        AttemptOutcome.UNKNOWN,
        AttemptOutcome.UNKNOWN,
        AttemptOutcome.ACCEPTED,
    )
    assert [w["status"] for w in await writes(ctl)] == [503, 503, 200]
    assert cid not in await open_ids(ctl)


async def test_a_retry_is_not_sent_once_the_bot_records_the_order_again(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(9)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await burst(ctl, 1000, status=503)
    bot = Bot()

    async def bot_records_meanwhile(_seconds: float) -> None:
        bot.record(cid)  # while the executor waits before its 2nd attempt

    ex = live_executor(BinanceFuturesPort(rest), bot, sleep=bot_records_meanwhile)
    result = await ex.execute(cancel_routed(cid), ex.begin_run())
    assert (result.status, result.reason) == (ResultStatus.SKIPPED, SkipReason.NOW_EXPECTED)
    assert result.attempts == (AttemptOutcome.UNKNOWN, AttemptOutcome.WITHHELD)
    assert len(await writes(ctl)) == 1
    await ctl.call("DELETE", "/faults")
    assert cid in await open_ids(ctl)


async def test_a_retry_is_not_sent_once_the_leadership_is_too_short(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(10)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await burst(ctl, 1000, status=503)
    lease = {"left_ms": 900}

    async def lease_runs_out(_seconds: float) -> None:
        lease["left_ms"] = 20  # a pause longer than the lease: it is (nearly) over

    ex = live_executor(
        BinanceFuturesPort(rest),
        Bot(),
        lease_window_ms=lambda: lease["left_ms"],
        sleep=lease_runs_out,
    )
    result = await ex.execute(cancel_routed(cid), ex.begin_run())
    assert (result.status, result.reason) == (ResultStatus.BLOCKED, BlockReason.NOT_LEADER)
    assert result.attempts == (AttemptOutcome.UNKNOWN, AttemptOutcome.WITHHELD)
    assert len(await writes(ctl)) == 1


async def test_the_lease_bounds_the_window_a_write_is_granted(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(11)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    ex = live_executor(BinanceFuturesPort(rest), Bot(), lease_window_ms=lambda: 700)
    ctx = ex.begin_run()
    m = cancel_routed(cid).mismatch
    assert ex.authorize_write(ActionKind.CANCEL, m, ctx) == 700
    ex.lease_window_ms = lambda: 60_000
    assert ex.authorize_write(ActionKind.CANCEL, m, ctx) == WRITE_WINDOW_MS
    ex.lease_window_ms = None
    assert ex.authorize_write(ActionKind.CANCEL, m, ctx) == WRITE_WINDOW_MS


async def test_a_flatten_retried_after_an_applied_503_reads_the_position_and_stops(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    """The 503 hid an execution: the re-read position is flat, nothing more is sent."""
    await ctl.call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "0.004"})
    await ctl.call(
        "POST",
        "/faults/errors",
        {"count": 1, "status": 503, "paths": [DELETE], "methods": ["POST"], "apply": True},
    )
    ex = live_executor(BinanceFuturesPort(rest), Bot())
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol="BTCUSDT",
        position_side=PositionSide.BOTH,
        expected_qty=Decimal("0"),
        observed_qty=Decimal("0.004"),
    )
    result = await ex.execute(Routed(m, ActionKind.FLATTEN, 100), ex.begin_run())
    assert (result.status, result.reason) == (ResultStatus.SKIPPED, SkipReason.ALREADY_RESOLVED)
    assert result.attempts == (AttemptOutcome.UNKNOWN,)
    sent = await writes(ctl)
    assert [(w["method"], w["status"]) for w in sent] == [("POST", 503)]
    state = await ctl.state()
    assert all(Decimal(p["positionAmt"]) == 0 for p in state["positions"])


async def test_the_rest_client_does_not_repeat_a_write_after_a_502(
    rest: BinanceRestClient, ctl: SimControl
) -> None:
    cid = ours(12)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    await burst(ctl, 1, status=502)
    with pytest.raises(ServerError):
        await BinanceFuturesPort(rest).cancel_order("BTCUSDT", cid)
    assert len(await writes(ctl)) == 1
    assert cid in await open_ids(ctl)


async def test_a_dropped_connection_does_not_make_the_http_library_resend_a_cancel() -> None:
    """aiohttp repeats an idempotent request once when the server drops the connection
    before answering; a cancel must reach the venue once per authorized attempt."""
    received: list[str] = []

    async def drop_every_request(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        received.append(head.split(b"\r\n")[0].decode())
        writer.close()  # no answer: the connection is dropped

    server = await asyncio.start_server(drop_every_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    authorizations: list[int] = []

    def authorize() -> int:
        authorizations.append(1)
        return 1500

    try:
        async with BinanceRestClient(f"http://127.0.0.1:{port}", Credentials(KEY, SECRET)) as rest:
            with pytest.raises(UnknownOutcome):  # dropped unanswered: it may have been executed
                await BinanceFuturesPort(rest).cancel_order(
                    "BTCUSDT", ours(13), authorize=authorize
                )
            assert rest.requests_sent == 1
    finally:
        server.close()
        await server.wait_closed()
    assert [line.split(" ")[0] for line in received] == ["DELETE"]
    assert len(authorizations) == 1
