"""Elector, fenced budget, cooldown anchor and expected store against a real redis-server."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.budget.ledger import BudgetRefused, BudgetState, RunBudget, utc_day
from grinder.budget.redis_store import RedisBudgetStore
from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.exchange.fake import FakePort
from grinder.ha.config import HaConfig
from grinder.ha.connection import RedisConnection, RedisUnavailable
from grinder.ha.elector import ElectorTimings, LeaderElector, LeadershipEvent
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import BlockReason, ResultStatus
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import (
    ExpectedOrder,
    Mismatch,
    MismatchType,
    ObservedOrder,
    OrderStatus,
    PositionSide,
    Side,
)
from grinder.redaction import mask_url
from grinder.remediation.executor import RemediationExecutor
from grinder.state.expected import ExpectedStoreError, ExpectedStoreFull, UnknownOrder
from grinder.state.redis_store import RedisExpectedStore
from tests.support.wait import wait_until

pytestmark = pytest.mark.redis

FAST = ElectorTimings(
    lease_ms=400, renew_interval_ms=100, retry_interval_ms=50, safety_margin_ms=60
)


class FakeMono:
    """A monotonic clock the test moves (a paused process's view of time)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def connect(redis_server: Any) -> Iterator[Callable[..., RedisConnection]]:
    made: list[RedisConnection] = []

    def factory(namespace: str = "t", timeout_s: float = 0.25) -> RedisConnection:
        conn = RedisConnection(redis_server.url, namespace=namespace, timeout_s=timeout_s)
        # An established deployment: its epoch is old, so the first election is immediate.
        conn.client.set(conn.key("epoch"), "1:seeded", nx=True)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        conn.close()


def elector(conn: RedisConnection, name: str, **kw: Any) -> LeaderElector:
    kw.setdefault("timings", FAST)
    return LeaderElector(conn, name, **kw)


def store_for(
    conn: RedisConnection, e: LeaderElector, *, recovery_ms: int = 0, **kw: Any
) -> RedisBudgetStore:
    return RedisBudgetStore(
        conn,
        fence=e.fence,
        min_lease_ms=e.timings.margin_ms,
        recovery_ms=recovery_ms,
        on_fenced=e.step_down,
        **kw,
    )


def today() -> str:
    return utc_day(time.time_ns() // 1_000_000)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hold(electors: list[LeaderElector], seconds: float) -> None:
    """Let time pass while the electors keep stepping (renewing / campaigning)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for e in electors:
            e.step()
        time.sleep(0.03)


# --- election ------------------------------------------------------------------------------


def test_one_elector_leads_and_every_new_leadership_gets_a_larger_token(
    connect: Callable[..., RedisConnection],
) -> None:
    conn = connect()
    a, b = elector(conn, "A"), elector(conn, "B")
    events: list[LeadershipEvent] = []
    a.add_listener(events.append)
    b.add_listener(events.append)
    a.step()
    b.step()
    assert a.is_leader()
    assert not b.is_leader()
    assert a.token == 1
    assert b.holder is not None
    assert b.holder.startswith("A 1 ")
    a.stop(release=True)  # a clean stop hands over at once
    b.step()
    assert b.is_leader()
    assert b.token == 2
    a.step()
    assert not a.is_leader()
    b.stop(release=True)
    a.step()
    assert a.token == 3
    assert [(e.instance_id, e.kind, e.token) for e in events] == [
        ("A", "acquired", 1),
        ("A", "lost", 1),
        ("B", "acquired", 2),
        ("B", "lost", 2),
        ("A", "acquired", 3),
    ]


def test_is_leader_is_false_once_the_local_deadline_passes_even_without_a_failed_renewal(
    connect: Callable[..., RedisConnection],
) -> None:
    conn = connect()
    mono = FakeMono()
    a = elector(conn, "A", monotonic=mono)
    a.step()
    assert a.is_leader()
    # No renewal happens (the process is "paused"); Redis still holds the lease.
    mono.t += (FAST.lease_ms - FAST.margin_ms) / 1000 - 0.001
    assert a.is_leader()
    mono.t += 0.002
    assert not a.is_leader()
    assert a.fence() is None
    assert conn.client.get(conn.key("leader")).startswith("A 1 ")


def test_a_leader_that_stops_renewing_is_replaced_only_after_its_local_deadline(
    connect: Callable[..., RedisConnection],
) -> None:
    conn = connect()
    a, b = elector(conn, "A"), elector(conn, "B")
    a.step()
    lost_at: list[float] = []
    a_deadline = time.monotonic() + a.remaining_s()
    acquired_at: list[float] = []
    b.add_listener(lambda e: acquired_at.append(time.monotonic()))
    b.start()
    try:
        while not acquired_at:
            if not a.is_leader() and not lost_at:
                lost_at.append(time.monotonic())
            assert not (a.is_leader() and b.is_leader())
            time.sleep(0.002)
    finally:
        b.stop()
    assert acquired_at[0] >= a_deadline
    # b leads within the lease TTL + one retry interval of a's last renewal
    assert (
        acquired_at[0] - (a_deadline - (FAST.lease_ms - FAST.margin_ms) / 1000)
        < (FAST.lease_ms + FAST.retry_ms + 250) / 1000
    )


def test_exactly_one_of_five_electors_leads_while_leaders_are_killed(
    connect: Callable[..., RedisConnection],
) -> None:
    """Five electors in threads; the leader is "killed" (thread stopped, lease kept) 6 times."""
    conn = connect()
    electors = [elector(connect(), f"E{i}") for i in range(5)]
    for e in electors:
        e.start()
    overlaps = 0
    tokens: set[int] = set()
    killed: list[LeaderElector] = []
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            leaders = [e for e in electors + killed if e.is_leader()]
            overlaps += len(leaders) > 1
            for e in leaders:
                assert e.token is not None
                tokens.add(e.token)
            if len(killed) == 6 and any(e.is_leader() for e in electors):
                break
            live = leaders and leaders[0] not in killed
            if live and len(killed) < 6 and leaders[0].remaining_s() > 0.2:
                victim = leaders[0]
                victim._stopping.set()  # dies without releasing: the lease must expire
                killed.append(victim)
                electors.remove(victim)
                replacement = elector(connect(), f"R{len(killed)}")
                replacement.start()
                electors.append(replacement)
            time.sleep(0.003)
    finally:
        for e in electors:
            e.stop()
    assert overlaps == 0
    assert len(killed) == 6
    assert len(tokens) >= 7
    assert sorted(tokens) == list(range(min(tokens), max(tokens) + 1))
    assert int(conn.client.get(conn.key("fencing"))) >= 7


def test_fencing_token_keeps_growing_after_redis_lost_its_data(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    conn = connect()
    a = elector(conn, "A")
    a.step()
    a.stop()
    a.step()
    assert a.token == 2
    epoch_before = a.epoch
    redis_server.restart()  # no persistence: lease, counter and epoch are gone
    conn_b = RedisConnection(redis_server.url, namespace="t", timeout_s=0.25)
    b = elector(conn_b, "B")
    b.max_token_seen = 2  # what B read from the lease as a follower
    b.step()
    assert not b.is_leader()  # a new epoch: nobody leads for one lease TTL
    started = time.monotonic()
    wait_until(lambda: (b.step(), b.is_leader())[1], interval_s=0.01)
    assert time.monotonic() - started >= FAST.lease_ms / 1000 - 0.05
    conn_b.close()
    assert b.token == 3
    assert b.epoch is not None
    assert b.epoch != epoch_before


def test_after_data_loss_a_newcomer_still_gets_a_token_above_every_live_instances(
    redis_server: Any,
) -> None:
    """The instance that knows the highest token need not win the first election
    after Redis lost its data: it campaigns during the epoch wait, which raises the
    counter, so whoever wins gets a larger token."""
    redis_server.restart()
    conn_a = RedisConnection(redis_server.url, namespace="t", timeout_s=0.25)
    conn_b = RedisConnection(redis_server.url, namespace="t", timeout_s=0.25)
    a, b = elector(conn_a, "A"), elector(conn_b, "B")
    a.max_token_seen = 11  # led before the loss
    b.max_token_seen = 0  # just restarted: knows nothing
    try:
        a.step()
        b.step()
        assert not a.is_leader()  # the epoch wait
        assert not b.is_leader()
        # only B campaigns from here
        wait_until(lambda: (b.step(), b.is_leader())[1], interval_s=0.01)
        assert b.token == 12
    finally:
        conn_a.close()
        conn_b.close()


# --- the fenced, shared budget --------------------------------------------------------------


def test_a_deposed_leader_that_did_not_notice_cannot_reserve(
    connect: Callable[..., RedisConnection],
) -> None:
    frozen = FakeMono()  # A is "paused": its clock does not move, it still believes it leads
    a = elector(connect(), "A", monotonic=frozen)
    b = elector(connect(), "B")
    a.step()
    assert a.is_leader()
    time.sleep(FAST.lease_ms / 1000 + 0.05)  # the lease expires in Redis
    b.step()
    assert b.is_leader()
    assert b.token == 2
    assert a.is_leader()  # not noticed yet
    store_a = store_for(a.conn, a)
    store_b = store_for(b.conn, b)
    day = BudgetState(day=today())
    with pytest.raises(BudgetRefused) as refused:
        store_a.reserve(
            day, Decimal(0), now_ms(), max_calls_per_day=10, max_notional_per_day=Decimal(100)
        )
    assert refused.value.reason is BlockReason.NOT_LEADER
    assert "fenced" in refused.value.detail
    assert "B 2" in refused.value.detail
    assert not a.is_leader()  # the refusal made it step down
    state = store_b.reserve(
        day, Decimal(0), now_ms(), max_calls_per_day=10, max_notional_per_day=Decimal(100)
    )
    assert state.calls_used_day == 1
    assert store_b.fetch(today()) == state


def test_a_lease_under_the_safety_margin_refuses_the_reservation(
    connect: Callable[..., RedisConnection],
) -> None:
    conn = connect()
    a = elector(conn, "A")
    a.step()
    conn.client.pexpire(conn.key("leader"), 20)  # 20 ms left < 60 ms margin
    with pytest.raises(BudgetRefused) as refused:
        store_for(conn, a).reserve(
            BudgetState(day=today()),
            Decimal(0),
            now_ms(),
            max_calls_per_day=10,
            max_notional_per_day=Decimal(100),
        )
    assert refused.value.reason is BlockReason.NOT_LEADER
    assert "safety margin" in refused.value.detail


def test_two_reservers_racing_for_the_last_call_only_one_wins_over_200_rounds(
    connect: Callable[..., RedisConnection],
) -> None:
    """Two connections reserving for the same leadership at the same instant, 200 times."""
    leader = elector(connect(), "A", timings=ElectorTimings(lease_ms=60_000))
    leader.step()
    stores = [store_for(connect(), leader), store_for(connect(), leader)]
    day_key = stores[0].day_key(today())
    client = stores[0].conn.client
    wins_per_round: list[int] = []
    for round_no in range(200):
        client.hset(day_key, mapping={"calls": round_no, "units": 0, "updated_ts": 1})
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def go(
            store: RedisBudgetStore,
            limit: int = round_no + 1,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                store.reserve(
                    BudgetState(day=today()),
                    Decimal("1.5"),
                    now_ms(),
                    max_calls_per_day=limit,
                    max_notional_per_day=Decimal(10**6),
                )
                outcomes.append("ok")
            except BudgetRefused as exc:
                outcomes.append(exc.reason.value)

        threads = [threading.Thread(target=go, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wins_per_round.append(outcomes.count("ok"))
        assert sorted(outcomes) == ["max_calls_per_day", "ok"], outcomes
        assert int(client.hget(day_key, "calls")) == round_no + 1
    print(f"\nHA budget race: rounds=200 double_spends={sum(w > 1 for w in wins_per_round)}")


def test_a_new_leader_continues_the_daily_budget_where_the_old_one_stopped(
    connect: Callable[..., RedisConnection],
) -> None:
    cfg = ReconcileConfig(max_calls_per_day=5, max_notional_per_day=Decimal(1000))
    a = elector(connect(), "A")
    a.step()
    tracker_a = BudgetTracker(config=cfg, store=store_for(a.conn, a), clock=now_ms)
    for _ in range(3):
        tracker_a.reserve(RunBudget(), Decimal("100.25"), now_ms())
    a._stopping.set()  # dies holding the lease
    b = elector(connect(), "B")
    tracker_b = BudgetTracker(config=cfg, store=store_for(b.conn, b), clock=now_ms)
    assert tracker_b.state.calls_used_day == 3  # read at start
    assert tracker_b.state.notional_used_day == Decimal("300.75")
    wait_until(lambda: (b.step(), b.is_leader())[1], interval_s=0.01)
    tracker_b.reserve(RunBudget(), Decimal("0"), now_ms())
    tracker_b.reserve(RunBudget(), Decimal("0"), now_ms())
    assert tracker_b.state.calls_used_day == 5
    with pytest.raises(BudgetRefused) as refused:
        tracker_b.reserve(RunBudget(), Decimal("0"), now_ms())
    assert refused.value.reason is BlockReason.MAX_CALLS_PER_DAY
    assert tracker_a.sync(now_ms())
    assert tracker_a.state.calls_used_day == 5


def test_redis_down_refuses_writes_and_after_data_loss_the_budget_is_restored_not_reset(
    redis_server: Any, connect: Callable[..., RedisConnection], tmp_path: Path
) -> None:
    cfg = ReconcileConfig(max_calls_per_day=100)
    a = elector(connect(), "A")
    b = elector(connect(), "B")
    mirror = FileBudgetStore(tmp_path / "a.json")
    store_a = store_for(a.conn, a, recovery_ms=300, mirror=mirror)
    store_b = store_for(b.conn, b, recovery_ms=300)
    a.add_epoch_listener(store_a.restore)
    b.add_epoch_listener(store_b.restore)
    a.step()
    b.step()
    tracker_a = BudgetTracker(config=cfg, store=store_a, clock=now_ms)
    hold([a, b], 0.35)  # first start: the epoch is new, writes wait out the recovery window
    for _ in range(4):
        tracker_a.reserve(RunBudget(), Decimal("10"), now_ms())
    assert mirror.load() is not None
    assert mirror.load().calls_used_day == 4
    redis_server.kill()
    with pytest.raises(BudgetRefused) as refused:
        tracker_a.reserve(RunBudget(), Decimal("10"), now_ms())
    assert refused.value.reason is BlockReason.NOT_LEADER
    assert "fail closed" in refused.value.detail
    assert not a.conn.up
    # the lease runs out locally
    wait_until(lambda: (a.step(), not a.is_leader())[1], interval_s=0.01)
    redis_server.start()  # empty: no lease, no budget, no epoch
    b.step()
    a.step()  # A (alive, follower now) sees the new epoch and restores what it knows
    assert not b.is_leader()  # new epoch: nobody leads for one lease TTL
    wait_until(lambda: (b.step(), b.is_leader())[1], interval_s=0.01)
    tracker_b = BudgetTracker(config=cfg, store=store_b, clock=now_ms)
    tracker_b.reserve(RunBudget(), Decimal("10"), now_ms())
    assert tracker_b.state.calls_used_day == 5  # 4 from before the loss + 1, never 1
    assert tracker_b.state.notional_used_day == Decimal("50")


def test_a_local_copy_dated_in_the_future_keeps_its_counts_with_a_warning(
    connect: Callable[..., RedisConnection], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis has nothing for today; the local copy was written on a later day (the clock was
    set back since): its counts are kept for today, never dropped, and the file is named."""
    a = elector(connect(), "A")
    mirror = FileBudgetStore(tmp_path / "a.json")
    mirror.save(
        BudgetState(
            day="2099-01-01",
            calls_used_day=6,
            notional_used_day=Decimal("60"),
            updated_ts_ms=4_070_908_800_000,
        )
    )
    store = store_for(a.conn, a, mirror=mirror)
    with caplog.at_level("WARNING", logger="grinder.ha"):
        tracker = BudgetTracker(config=ReconcileConfig(), store=store, clock=now_ms)
    assert (tracker.state.day, tracker.state.calls_used_day) == (today(), 6)
    assert tracker.state.notional_used_day == Decimal("60")
    warnings = [r.getMessage() for r in caplog.records if "dated in the future" in r.getMessage()]
    assert len(warnings) == 1
    assert str(mirror.path) in warnings[0]


def test_an_operator_reset_is_not_undone_by_an_instance_that_remembers_the_old_count(
    connect: Callable[..., RedisConnection],
) -> None:
    cfg = ReconcileConfig(max_calls_per_day=100)
    a = elector(connect(), "A")
    a.step()
    store_a = store_for(a.conn, a)
    tracker_a = BudgetTracker(config=cfg, store=store_a, clock=now_ms)
    for _ in range(3):
        tracker_a.reserve(RunBudget(), Decimal(0), now_ms())
    time.sleep(0.002)
    operator = store_for(connect(), a)
    operator.reset(now_ms())
    time.sleep(0.002)
    assert store_a.restore("") is True  # A pushes its (older) knowledge: ignored
    tracker_a.reserve(RunBudget(), Decimal(0), now_ms())  # A's stale floor of 3: ignored
    assert tracker_a.state.calls_used_day == 1


def test_the_cooldown_runs_from_the_last_write_of_any_instance(
    connect: Callable[..., RedisConnection],
) -> None:
    cfg = ReconcileConfig(
        action=RemediationAction.CANCEL_ALL,
        dry_run=False,
        allow_active_remediation=True,
        cooldown_seconds=60,
        symbol_whitelist=["BTCUSDT"],
    )
    a = elector(connect(), "A")
    a.step()
    store_a = store_for(a.conn, a)
    cid = "grinder_d_BTCUSDT_1_1704067200_1"
    port = FakePort()
    port.add_order(
        ObservedOrder(
            client_order_id=cid,
            symbol="BTCUSDT",
            side=Side.BUY,
            status=OrderStatus.NEW,
            qty=Decimal("0.01"),
            price=Decimal("40000"),
        )
    )
    routed = Routed(
        Mismatch(
            type=MismatchType.ORDER_EXISTS_UNEXPECTED,
            symbol="BTCUSDT",
            client_order_id=cid,
            observed_status="NEW",
        ),
        ActionKind.CANCEL,
        10,
    )

    def executor(e: LeaderElector, store: RedisBudgetStore) -> RemediationExecutor:
        return RemediationExecutor(
            config=cfg,
            port=port,
            armed=True,
            budget=BudgetTracker(config=cfg, store=store, clock=now_ms),
            is_leader=e.is_leader,
            cooldown=store,
            env={"ALLOW_MAINNET_TRADE": "1"},
            clock=now_ms,
            expected_heartbeat_age=lambda: 0.0,  # a bot keeps the expected state (gate E)
        )

    ex_a = executor(a, store_a)
    result = asyncio.run(ex_a.execute(routed, ex_a.begin_run()))
    assert result.status is ResultStatus.EXECUTED
    a.stop()
    b = elector(connect(), "B")
    b.step()
    store_b = store_for(b.conn, b)
    ex_b = executor(b, store_b)
    result = asyncio.run(ex_b.execute(routed, ex_b.begin_run()))
    assert (result.status, result.reason) == (ResultStatus.BLOCKED, "cooldown_not_elapsed")
    assert len(port.write_calls) == 1


def test_a_fenced_write_is_blocked_not_leader_and_never_reaches_the_exchange(
    connect: Callable[..., RedisConnection],
) -> None:
    cfg = ReconcileConfig(
        action=RemediationAction.FLATTEN,
        dry_run=False,
        allow_active_remediation=True,
        cooldown_seconds=0,
        symbol_whitelist=["BTCUSDT"],
    )
    frozen = FakeMono()
    a = elector(connect(), "A", monotonic=frozen)
    a.step()
    time.sleep(FAST.lease_ms / 1000 + 0.05)
    b = elector(connect(), "B")
    b.step()
    port = FakePort()
    port.mark_prices["BTCUSDT"] = Decimal("50000")
    port.step_sizes["BTCUSDT"] = Decimal("0.001")
    port.set_position("BTCUSDT", Decimal("0.002"))
    store = store_for(a.conn, a)
    ex = RemediationExecutor(
        config=cfg,
        port=port,
        armed=True,
        budget=BudgetTracker(config=cfg, store=store, clock=now_ms),
        is_leader=a.is_leader,
        env={"ALLOW_MAINNET_TRADE": "1"},
        clock=now_ms,
        expected_heartbeat_age=lambda: 0.0,
    )
    routed = Routed(
        Mismatch(
            type=MismatchType.POSITION_NONZERO_UNEXPECTED,
            symbol="BTCUSDT",
            position_side=PositionSide.BOTH,
            expected_qty=Decimal(0),
            observed_qty=Decimal("0.002"),
        ),
        ActionKind.FLATTEN,
        100,
    )

    result = asyncio.run(ex.execute(routed, ex.begin_run()))
    assert (result.status, result.reason) == (ResultStatus.BLOCKED, "not_leader")
    assert result.error is not None
    assert "fenced" in result.error
    assert port.write_calls == []


# --- connection --------------------------------------------------------------------------------


def test_an_unreachable_redis_fails_fast_and_the_state_is_visible(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    conn = connect(timeout_s=0.2)
    states: list[bool] = []
    conn.on_state(lambda up, _e: states.append(up))
    assert conn.ping()
    redis_server.kill()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        conn.run("ping", lambda c: c.ping())
    assert time.monotonic() - started < 1.0
    redis_server.start()
    assert conn.ping()
    assert states == [True, False, True]
    assert mask_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"


def test_a_slow_redis_times_out_and_fails_closed(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    conn = connect(timeout_s=0.2)
    a = elector(conn, "A", timings=ElectorTimings(lease_ms=60_000))
    a.step()
    store = store_for(conn, a)
    redis_server.pause()  # hung: the TCP connection stays open, no answer comes
    started = time.monotonic()
    with pytest.raises(BudgetRefused) as refused:
        store.reserve(
            BudgetState(day=today()),
            Decimal(0),
            now_ms(),
            max_calls_per_day=10,
            max_notional_per_day=Decimal(100),
        )
    assert time.monotonic() - started < 0.45
    assert refused.value.reason is BlockReason.NOT_LEADER
    redis_server.resume()
    assert conn.ping()


def test_ha_config_rejects_inconsistent_timings() -> None:
    with pytest.raises(ValueError, match="renew interval"):
        HaConfig(lease_ttl_s=1.0, renew_interval_s=0.9)
    with pytest.raises(ValueError, match="safety margin"):
        HaConfig(lease_ttl_s=1.0, safety_margin_s=0.6)
    cfg = HaConfig(lease_ttl_s=1.5)
    t = cfg.timings()
    assert (t.lease_ms, t.renew_ms, t.retry_ms, t.margin_ms) == (1500, 500, 500, 150)


# --- the expected-state backend --------------------------------------------------------------


def eo(cid: str, *, created: int = 1000, symbol: str = "BTCUSDT") -> ExpectedOrder:
    return ExpectedOrder(
        client_order_id=cid,
        symbol=symbol,
        side=Side.BUY,
        qty=Decimal("0.010"),
        price=Decimal("20000.5"),
        created_ts_ms=created,
        updated_ts_ms=created,
    )


def test_expected_store_writer_and_reader_share_orders_and_positions(
    connect: Callable[..., RedisConnection],
) -> None:
    writer = RedisExpectedStore(connect())
    reader = RedisExpectedStore(connect(), readonly=True)
    writer.record_order(eo("grinder_d_BTCUSDT_1_1_1"))
    writer.record_order(eo("grinder_d_BTCUSDT_1_1_2"))
    writer.set_position("BTCUSDT", Decimal("-0.003"), 2000)
    changed = reader.refresh()
    assert changed.order_ids == {"grinder_d_BTCUSDT_1_1_1", "grinder_d_BTCUSDT_1_1_2"}
    assert changed.position_keys == {("BTCUSDT", PositionSide.BOTH)}
    got = reader.get_order("grinder_d_BTCUSDT_1_1_1")
    assert got == eo("grinder_d_BTCUSDT_1_1_1")
    pos = reader.get_position(("BTCUSDT", PositionSide.BOTH))
    assert pos is not None
    assert pos.qty == Decimal("-0.003")
    assert not reader.refresh().changed  # nothing new: one round trip, nothing changed
    writer.mark_cancel_requested("grinder_d_BTCUSDT_1_1_1", 3000)
    writer.mark_status("grinder_d_BTCUSDT_1_1_2", OrderStatus.FILLED, 3100)
    writer.remove_order("nope")  # no error
    assert reader.refresh().order_ids == {"grinder_d_BTCUSDT_1_1_1", "grinder_d_BTCUSDT_1_1_2"}
    one = reader.get_order("grinder_d_BTCUSDT_1_1_1")
    two = reader.get_order("grinder_d_BTCUSDT_1_1_2")
    assert one is not None
    assert one.cancel_requested
    assert one.ended_ts_ms == 3000
    assert two is not None
    assert two.status is OrderStatus.FILLED
    assert two.ended_ts_ms == 3100
    with pytest.raises(UnknownOrder):
        writer.mark_status("nope", OrderStatus.FILLED, 1)
    assert writer.evict_expired(3000 + writer.terminal_ttl_ms) == 1
    assert writer.evict_expired(3100 + writer.terminal_ttl_ms) == 1
    reader.refresh()
    assert list(reader.orders()) == []


def test_expected_store_is_bounded_and_never_forgets_an_open_order(
    connect: Callable[..., RedisConnection],
) -> None:
    store = RedisExpectedStore(connect(), max_orders=2)
    store.record_order(eo("a1"))
    store.record_order(eo("a2"))
    with pytest.raises(ExpectedStoreFull):
        store.record_order(eo("a3"))
    store.mark_status("a1", OrderStatus.CANCELED, 5000)
    store.record_order(eo("a3"))  # evicts the ended one
    reader = RedisExpectedStore(connect(), readonly=True)
    assert sorted(o.client_order_id for o in reader.orders()) == ["a2", "a3"]


def test_expected_reader_behind_the_tombstone_floor_reloads_everything(
    connect: Callable[..., RedisConnection],
) -> None:
    writer = RedisExpectedStore(connect(), tombstone_retention=2)
    reader = RedisExpectedStore(connect(), readonly=True)
    for i in range(6):
        writer.record_order(eo(f"o{i}"))
    reader.refresh()
    for i in range(5):
        writer.remove_order(f"o{i}")
    result = reader.refresh()
    assert result.full
    assert [o.client_order_id for o in reader.orders()] == ["o5"]


def test_expected_reader_keeps_its_mirror_when_redis_lost_its_data(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    writer = RedisExpectedStore(connect())
    reader = RedisExpectedStore(connect(), readonly=True)
    writer.record_order(eo("before"))
    reader.refresh()
    redis_server.restart()
    writer.record_order(eo("after"))
    reader.refresh()
    assert reader.epoch_resets == 1
    assert sorted(o.client_order_id for o in reader.orders()) == ["after", "before"]


# --- the bot's heartbeat in Redis (gate E) -------------------------------------------------


def test_a_bots_writes_and_heartbeats_stamp_the_heartbeat_with_redis_time(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    conn = connect()
    reader = RedisExpectedStore(connect(), readonly=True)
    assert reader.heartbeat_age_s() == math.inf  # never written by a bot
    # Writers that are not the bot (grinder expected adopt) leave it alone.
    RedisExpectedStore(connect()).record_order(eo("grinder_d_BTCUSDT_1_1_1"))
    reader.refresh()
    assert reader.heartbeat_age_s() == math.inf
    bot = RedisExpectedStore(conn, bot=True)
    bot.record_order(eo("grinder_d_BTCUSDT_1_1_2"))
    reader.refresh()
    assert 0 <= reader.heartbeat_age_s() < 1.0
    stamp = int(redis_server.client().get("t:expected:heartbeat"))
    seconds, micros = redis_server.client().time()
    assert abs(seconds * 1000 + micros // 1000 - stamp) < 1000  # Redis's own clock
    # A heartbeat changes no record: readers see no change but a new stamp.
    time.sleep(0.05)
    bot.heartbeat()
    assert int(redis_server.client().get("t:expected:heartbeat")) > stamp
    assert not reader.refresh().changed
    for write in (
        lambda: bot.set_position("BTCUSDT", Decimal("0.002"), 1),
        lambda: bot.mark_cancel_requested("grinder_d_BTCUSDT_1_1_2", 2),
        lambda: bot.mark_status("grinder_d_BTCUSDT_1_1_2", OrderStatus.CANCELED, 3),
        lambda: bot.remove_order("grinder_d_BTCUSDT_1_1_2"),
        lambda: bot.evict_expired(10),
    ):
        before = redis_server.client().get("t:expected:heartbeat")
        time.sleep(0.005)
        write()
        assert redis_server.client().get("t:expected:heartbeat") != before
    with pytest.raises(ExpectedStoreError):
        reader.heartbeat()  # a read-only store is not the bot


def test_the_heartbeat_age_grows_between_refreshes_and_while_redis_is_unreachable(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    local = {"t": 5_000_000}
    bot = RedisExpectedStore(connect(), bot=True)
    reader = RedisExpectedStore(connect(), readonly=True, load=False, clock=lambda: local["t"])
    assert reader.heartbeat_age_s() == math.inf  # not read yet
    bot.heartbeat()
    reader.refresh()
    read_age = reader.heartbeat_age_s()
    assert read_age < 1.0
    # The reader's clock moves on (it could be skewed: only the time since the read counts).
    local["t"] += 30_000
    assert reader.heartbeat_age_s() == pytest.approx(read_age + 30, abs=0.001)
    redis_server.kill()
    with pytest.raises(RedisUnavailable):
        reader.refresh()
    local["t"] += 40_000  # a failed refresh keeps the last age growing: stale after 60 s
    assert reader.heartbeat_age_s() > 60
    redis_server.start()  # came back empty: no heartbeat until the bot beats again

    def refreshed() -> bool:
        try:
            reader.refresh()
        except RedisUnavailable:
            return False  # the connection backs off a moment after a failure
        return True

    wait_until(refreshed, interval_s=0.01)
    assert reader.heartbeat_age_s() == math.inf
    wait_until(lambda: _beat(bot), interval_s=0.01)
    reader.refresh()
    assert reader.heartbeat_age_s() < 1.0


def _beat(store: RedisExpectedStore) -> bool:
    try:
        store.heartbeat()
    except RedisUnavailable:
        return False
    return True


def test_the_heartbeat_from_another_process_reaches_a_reader(
    redis_server: Any, connect: Callable[..., RedisConnection]
) -> None:
    script = (
        "import sys\n"
        "from grinder.ha.connection import RedisConnection\n"
        "from grinder.state.redis_store import RedisExpectedStore\n"
        "RedisExpectedStore(RedisConnection(sys.argv[1], namespace='t'), bot=True).heartbeat()\n"
    )
    reader = RedisExpectedStore(connect(), readonly=True)
    proc = subprocess.run(
        [sys.executable, "-c", script, redis_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    reader.refresh()
    assert reader.heartbeat_age_s() < 5.0
