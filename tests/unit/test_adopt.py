"""adopt_baseline: the exchange's present state becomes the expected baseline."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.fake import FakePort
from grinder.exchange.port import ExchangeError
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.identity import Ownership
from grinder.reconcile.types import (
    ExpectedOrder,
    ObservedOrder,
    OrderStatus,
    PositionSide,
    Side,
)
from grinder.state.adopt import AdoptedPosition, adopt_baseline
from grinder.state.expected import ExpectedStoreFull, MemoryExpectedStore
from grinder.state.observed import ObservedStore
from grinder.state.sqlite import SqliteExpectedStore

D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"
NOW = 1_800_000_000_000
BOTH = PositionSide.BOTH


def ours(n: int, symbol: str = BTC, strategy: str = "d") -> str:
    return f"grinder_{strategy}_{symbol}_1_1704067200_{n}"


def obs(client_order_id: str, symbol: str = BTC, **kw: Any) -> ObservedOrder:
    return ObservedOrder(
        client_order_id=client_order_id,
        symbol=symbol,
        side=kw.pop("side", Side.BUY),
        status=kw.pop("status", OrderStatus.NEW),
        qty=kw.pop("qty", D("0.010")),
        price=kw.pop("price", D("42000.5")),
        created_ts_ms=kw.pop("created_ts_ms", NOW - 3_600_000),
        update_ts_ms=NOW - 3_600_000,
        **kw,
    )


def expected(client_order_id: str, *, created: int = NOW - 3_600_000) -> ExpectedOrder:
    return ExpectedOrder(
        client_order_id=client_order_id,
        symbol=BTC,
        side=Side.SELL,
        qty=D("1"),
        price=D("100"),
        created_ts_ms=created,
        updated_ts_ms=created,
    )


FOREIGN = {
    "web_manual_123": Ownership.NO_GRINDER_PREFIX,
    "autoclose-1704067200123": Ownership.NO_GRINDER_PREFIX,
    "adl_autoclose": Ownership.NO_GRINDER_PREFIX,
    "settlement_autoclose-BTCUSDT": Ownership.NO_GRINDER_PREFIX,
    ours(9, strategy="x"): Ownership.STRATEGY_NOT_ALLOWED,
    "otherbot_d_BTCUSDT_1_1704067200_1": Ownership.NO_GRINDER_PREFIX,
}


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield MemoryExpectedStore()
        return
    s = SqliteExpectedStore(tmp_path / "expected.db")
    yield s
    s.close()


def port_with_account() -> FakePort:
    port = FakePort()
    port.add_order(obs(ours(1)))
    port.add_order(obs(ours(2, ETH), ETH, side=Side.SELL, status=OrderStatus.PARTIALLY_FILLED))
    port.add_order(obs(ours(3), order_type="STOP_MARKET", price=None, is_algo=True, side=Side.SELL))
    for cid in FOREIGN:
        port.add_order(obs(cid))
    port.set_position(BTC, D("0.5"))
    port.set_position(ETH, D("-1.25"), PositionSide.SHORT)
    port.set_position("SOLUSDT", D("0"))
    return port


async def test_adopts_our_open_orders_and_skips_every_foreign_one(store: Any) -> None:
    port = port_with_account()
    report = await adopt_baseline(store, port, ReconcileConfig(), NOW)

    assert report.adopted_orders == sorted([ours(1), ours(2, ETH), ours(3)])
    assert report.orders_adopted == 3
    assert dict(report.skipped_foreign_orders) == FOREIGN
    assert report.orders_skipped_foreign == len(FOREIGN)
    assert {o.client_order_id for o in store.orders()} == {ours(1), ours(2, ETH), ours(3)}
    for cid in FOREIGN:
        assert store.get_order(cid) is None


async def test_adopted_orders_carry_the_exchange_details(store: Any) -> None:
    await adopt_baseline(store, port_with_account(), ReconcileConfig(), NOW)
    partial = store.get_order(ours(2, ETH))
    algo = store.get_order(ours(3))
    assert partial is not None
    assert algo is not None
    assert (partial.symbol, partial.side, partial.qty, partial.status) == (
        ETH,
        Side.SELL,
        D("0.010"),
        OrderStatus.PARTIALLY_FILLED,
    )
    assert partial.expected_open
    assert (algo.is_algo, algo.order_type, algo.price) == (True, "STOP_MARKET", None)
    assert partial.created_ts_ms == NOW - 3_600_000
    assert partial.updated_ts_ms == NOW


async def test_adoption_sends_nothing_to_the_exchange(store: Any) -> None:
    port = port_with_account()
    await adopt_baseline(store, port, ReconcileConfig(), NOW)
    assert port.write_calls == []
    assert {c.method for c in port.calls} == {"fetch_open_orders", "fetch_positions"}
    assert len(port.open_orders) == 3 + len(FOREIGN)


async def test_strategy_allowlist_decides_what_is_ours(store: Any) -> None:
    port = FakePort()
    port.add_order(obs(ours(1)))
    port.add_order(obs(ours(2, strategy="x")))
    config = ReconcileConfig(strategy_allowlist=["d", "x"])
    report = await adopt_baseline(store, port, config, NOW)
    assert report.adopted_orders == [ours(1), ours(2, strategy="x")]
    assert report.skipped_foreign_orders == []


async def test_custom_prefix_makes_default_prefix_orders_foreign(store: Any) -> None:
    port = FakePort()
    port.add_order(obs(ours(1)))
    port.add_order(obs("gx_d_BTCUSDT_1_1704067200_1"))
    report = await adopt_baseline(store, port, ReconcileConfig(client_order_id_prefix="gx_"), NOW)
    assert report.adopted_orders == ["gx_d_BTCUSDT_1_1704067200_1"]
    assert report.skipped_foreign_orders == [(ours(1), Ownership.NO_GRINDER_PREFIX)]


async def test_every_nonzero_position_becomes_the_intended_position(store: Any) -> None:
    store.set_position(BTC, D("0.1"), NOW - 10)
    report = await adopt_baseline(store, port_with_account(), ReconcileConfig(), NOW)
    got = {p.key: (p.qty, p.updated_ts_ms) for p in store.positions()}
    assert got == {
        (BTC, BOTH): (D("0.5"), NOW),
        (ETH, PositionSide.SHORT): (D("-1.25"), NOW),
    }
    assert report.adopted_positions == [
        AdoptedPosition(BTC, BOTH, D("0.5"), D("0.1")),
        AdoptedPosition(ETH, PositionSide.SHORT, D("-1.25"), None),
    ]
    assert report.positions_adopted == 2


async def test_expected_positions_flat_on_the_exchange_are_zeroed_and_reported(
    store: Any,
) -> None:
    store.set_position(ETH, D("3"), NOW - 10)
    store.set_position(BTC, D("2"), NOW - 10, PositionSide.LONG)
    store.set_position("XRPUSDT", D("0"), NOW - 10)
    port = FakePort()
    port.set_position(BTC, D("0.5"))
    report = await adopt_baseline(store, port, ReconcileConfig(), NOW)
    assert report.zeroed_positions == [(BTC, PositionSide.LONG), (ETH, BOTH)]
    got = {p.key: p.qty for p in store.positions()}
    assert got == {
        (BTC, BOTH): D("0.5"),
        (BTC, PositionSide.LONG): D("0"),
        (ETH, BOTH): D("0"),
        ("XRPUSDT", BOTH): D("0"),
    }


async def test_expected_orders_missing_from_exchange_are_marked_ended_and_reported(
    store: Any,
) -> None:
    store.record_order(expected(ours(10)))
    store.record_order(expected(ours(11)))
    gone_earlier = expected(ours(12))
    store.record_order(gone_earlier)
    store.mark_status(ours(12), OrderStatus.FILLED, NOW - 1000)
    port = FakePort()
    port.add_order(obs(ours(11)))
    report = await adopt_baseline(store, port, ReconcileConfig(), NOW)

    assert report.ended_orders == [ours(10)]
    assert report.already_expected_orders == [ours(11)]
    assert report.adopted_orders == []
    ended = store.get_order(ours(10))
    assert ended is not None
    assert not ended.expected_open
    assert ended.ended_ts_ms == NOW
    still = store.get_order(ours(11))
    assert still is not None
    assert still.expected_open
    assert still.side is Side.SELL  # the bot's own record is kept, not overwritten
    filled = store.get_order(ours(12))
    assert filled is not None
    assert (filled.status, filled.ended_ts_ms) == (OrderStatus.FILLED, NOW - 1000)


async def test_recently_recorded_order_absent_from_exchange_is_kept_open(store: Any) -> None:
    config = ReconcileConfig()
    store.record_order(expected(ours(20), created=NOW - config.order_grace_ms + 1))
    store.record_order(expected(ours(21), created=NOW - config.order_grace_ms))
    report = await adopt_baseline(store, FakePort(), config, NOW)
    assert report.kept_recent_orders == [ours(20)]
    assert report.ended_orders == [ours(21)]
    kept = store.get_order(ours(20))
    assert kept is not None
    assert kept.expected_open


async def test_order_the_bot_ended_but_still_open_is_adopted_as_open(store: Any) -> None:
    store.record_order(expected(ours(1)))
    store.mark_cancel_requested(ours(1), NOW - 60_000)
    port = FakePort()
    port.add_order(obs(ours(1)))
    report = await adopt_baseline(store, port, ReconcileConfig(), NOW)
    assert report.adopted_orders == [ours(1)]
    o = store.get_order(ours(1))
    assert o is not None
    assert o.expected_open
    assert not o.cancel_requested


async def test_after_adoption_detection_reports_no_mismatch(store: Any) -> None:
    store.record_order(expected(ours(10)))
    store.set_position(ETH, D("3"), NOW - 10)
    port = port_with_account()
    config = ReconcileConfig()
    observed = ObservedStore()
    observed.apply_open_orders_snapshot(await port.fetch_open_orders(), NOW)
    observed.apply_positions_snapshot(await port.fetch_positions(), NOW)
    before = ReconcileEngine(config, store, observed).detect(NOW + 60_000)
    assert before.mismatches or before.missing_candidates

    await adopt_baseline(store, port, config, NOW)

    after = ReconcileEngine(config, store, observed).detect(NOW + 60_000)
    assert after.mismatches == []
    assert after.missing_candidates == []
    assert after.foreign_open_orders == len(FOREIGN)


async def test_report_counts_and_summary_line(store: Any) -> None:
    store.record_order(expected(ours(10)))
    report = await adopt_baseline(store, port_with_account(), ReconcileConfig(), NOW)
    assert report.counts() == {
        "orders_adopted": 3,
        "orders_already_expected": 0,
        "orders_skipped_foreign": len(FOREIGN),
        "orders_marked_ended": 1,
        "orders_kept_recent": 0,
        "positions_adopted": 2,
        "positions_zeroed": 0,
    }
    line = report.summary_line()
    assert line.startswith("EXPECTED_ADOPT orders_adopted=3 ")
    assert "\n" not in line


async def test_exchange_error_leaves_the_store_untouched(store: Any) -> None:
    store.record_order(expected(ours(10)))
    port = port_with_account()
    port.fail_once["fetch_positions"] = ExchangeError("boom", code=-1000)
    with pytest.raises(ExchangeError):
        await adopt_baseline(store, port, ReconcileConfig(), NOW)
    assert [o.client_order_id for o in store.orders()] == [ours(10)]
    o = store.get_order(ours(10))
    assert o is not None
    assert o.expected_open


async def test_sqlite_adoption_is_all_or_nothing_when_the_store_is_full(tmp_path: Path) -> None:
    with SqliteExpectedStore(tmp_path / "e.db", max_orders=2) as s:
        s.record_order(expected(ours(10)))
        port = port_with_account()  # three orders of ours: one too many
        with pytest.raises(ExpectedStoreFull):
            await adopt_baseline(s, port, ReconcileConfig(), NOW)
        assert [o.client_order_id for o in s.orders()] == [ours(10)]
        assert list(s.positions()) == []
        with SqliteExpectedStore(tmp_path / "e.db", readonly=True) as r:
            assert [o.client_order_id for o in r.orders()] == [ours(10)]
            assert list(r.positions()) == []


async def test_sqlite_adoption_sees_writes_made_by_another_process_since_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.db"
    with SqliteExpectedStore(path) as service, SqliteExpectedStore(path) as bot:
        bot.record_order(expected(ours(10)))  # not yet in the service's mirror
        report = await adopt_baseline(service, FakePort(), ReconcileConfig(), NOW)
        assert report.ended_orders == [ours(10)]
        bot.refresh()
        o = bot.get_order(ours(10))
        assert o is not None
        assert not o.expected_open
