"""grinder gates: gate 6 from the anchors the service's executor uses."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from grinder.ceremony.sources import parse_scrape
from grinder.cli.gates import build_executor
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.explain import Verdict, explain
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind

NOW = 1_704_110_400_000
OURS = "grinder_d_BTCUSDT_1_1704067200_1"


def service_status(**extra: Any) -> dict[str, Any]:
    config = ReconcileConfig(
        action="cancel_all",
        dry_run=False,
        allow_active_remediation=True,
        symbol_whitelist=["BTCUSDT"],
        cooldown_seconds=60,
    ).summary()
    return {
        "venue": "sim",
        "mode": "live",
        "armed": True,
        "allow_mainnet_trade": True,
        "symbol_whitelist": ["BTCUSDT"],
        "config": config,
        "budget": {"calls_used_day": 0, "notional_used_day": "0"},
        "last_remediation_ts_ms": None,
        "last_planned_ts_ms": None,
        **extra,
    }


# This instance never wrote: its own gauge says 0. Another instance (HA) wrote 10 s ago.
SCRAPE = parse_scrape(
    "http://127.0.0.1:9090/metrics",
    "grinder_ha_is_leader 1\ngrinder_reconcile_last_remediation_ts_ms 0\n"
    "grinder_reconcile_budget_calls_used_day 0\ngrinder_reconcile_budget_notional_used_day 0\n",
)


def test_gate_6_runs_from_the_anchor_the_service_reports_not_from_the_local_gauge() -> None:
    status = service_status(
        cooldown={
            "seconds": 60.0,
            "source": "redis",
            "live_anchor_ts_ms": NOW - 10_000,
            "dry_run_anchor_ts_ms": NOW - 10_000,
        }
    )
    executor, ctx, notes = build_executor(status, SCRAPE, NOW)
    exp = explain(executor, ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx)
    gate6 = next(c for c in exp.checks if c.gate == "6")
    assert gate6.verdict is Verdict.FAIL
    assert gate6.detail == "10.0 s since the last remediation (cooldown 60 s, 50.0 s left)"
    assert exp.first_block is BlockReason.COOLDOWN_NOT_ELAPSED
    assert executor.gate(ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx) is (
        BlockReason.COOLDOWN_NOT_ELAPSED
    )
    assert not any("cooldown" in n for n in notes)


def test_a_service_without_the_anchors_is_read_from_its_gauge_with_a_warning() -> None:
    executor, ctx, notes = build_executor(service_status(), SCRAPE, NOW)
    assert ctx.live_anchor_ms is None
    exp = explain(executor, ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx)
    assert exp.first_block is None
    assert any("another instance's write may hold it closed" in n for n in notes)
