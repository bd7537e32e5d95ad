"""The dead-man switch: its rules, its pure decision and the renewing shell over a port.

The switch against a real exchange (the simulator's ``countdownCancelAll``) and a real
HA deployment is tested in ``tests/ha/test_deadman_ha.py``; here the port is the
recording ``FakePort`` and the clock a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from grinder.cli.reconcile import service_options
from grinder.clock import ManualClock
from grinder.deadman.config import DeadmanConfig
from grinder.deadman.decision import (
    Health,
    SymbolRenewals,
    Withhold,
    countdown_left_ms,
    is_due,
    next_due_ms,
    withhold_reason,
)
from grinder.deadman.metrics import DeadmanMetrics
from grinder.exchange.fake import FakePort
from grinder.exchange.port import TransientExchangeError
from grinder.reconcile.config import ConfigError
from grinder.reconcile.write_window import MIN_WRITE_WINDOW_MS, WRITE_WINDOW_MS
from grinder.service.deadman import DeadmanSwitch
from grinder.service.options import load_config_file

HEALTHY = Health(
    acting=True,
    lease_left_ms=None,
    heartbeat_age_s=1.0,
    heartbeat_max_age_s=60.0,
    stream_live=True,
    snapshot_age_ms=5_000,
    max_snapshot_age_ms=120_000,
)

# --- the rules of [deadman] -------------------------------------------------------------------


def test_defaults_are_off_and_follow_the_documented_example() -> None:
    cfg = DeadmanConfig()
    assert not cfg.enabled
    assert (cfg.countdown_s, cfg.renew_interval_s) == (120.0, 30.0)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"enabled": True}, "symbols: list the symbols"),
        ({"countdown_s": 60.0, "renew_interval_s": 21.0}, "at most a third of countdown_s"),
        ({"countdown_s": 2.0, "renew_interval_s": 0.5}, "countdown_s must be at least 3"),
        ({"symbols": ["btcusdt"]}, "upper-case symbols"),
        ({"symbols": ["BTCUSDT", "BTCUSDT"]}, "listed twice"),
        ({"symbols": [f"S{i}USDT" for i in range(7)]}, "over 240"),
        ({"countdown_s": float("inf")}, "finite"),
        ({"enabled": "yes", "symbols": ["BTCUSDT"]}, "valid boolean"),
    ],
)
def test_bad_tables_are_refused_with_the_rule_named(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        DeadmanConfig.model_validate(fields)


def test_the_weight_bound_counts_retries_and_symbols() -> None:
    six = DeadmanConfig(symbols=[f"S{i}USDT" for i in range(6)])
    assert six.weight_per_minute() == 240.0  # 6 x 10 weight x 2 (retries) x 2 a minute


def test_a_failover_must_fit_inside_the_countdown() -> None:
    cfg = DeadmanConfig(enabled=True, symbols=["BTCUSDT"], countdown_s=17.0, renew_interval_s=5.0)
    assert cfg.check_with_ha(10.0) is not None  # 10 + 5 + 2 >= 17
    assert (
        DeadmanConfig(
            enabled=True, symbols=["BTCUSDT"], countdown_s=18.0, renew_interval_s=5.0
        ).check_with_ha(10.0)
        is None
    )
    # Off but listed, a reload could switch it on: checked all the same.
    assert replace_enabled(cfg, False).check_with_ha(10.0) is not None
    assert DeadmanConfig(countdown_s=17.0, renew_interval_s=5.0).check_with_ha(10.0) is None


def replace_enabled(cfg: DeadmanConfig, enabled: bool) -> DeadmanConfig:
    return DeadmanConfig.model_validate({**cfg.model_dump(), "enabled": enabled})


def test_config_file_errors_name_the_file_and_table(tmp_path: Path) -> None:
    path = tmp_path / "grinder.toml"
    path.write_text('[deadman]\nenabled = true\nsymbols = ["BTCUSDT"]\ncountdown_s = 9.0\n')
    with pytest.raises(ConfigError, match=r"grinder.toml \[deadman\]: .*at most a third"):
        load_config_file(path)
    path.write_text('[deadman]\nenabled = true\nsymbols = ["BTCUSDT"]\nmax_snapshot_age_s = 60.0\n')
    with pytest.raises(ConfigError, match=r"\[deadman\]: max_snapshot_age_s .* shorter"):
        load_config_file(path)
    path.write_text("deadman = 3\n")
    with pytest.raises(ConfigError, match=r"\[deadman\] must be a table"):
        load_config_file(path)


def test_resolve_checks_the_handover_and_mainnet(tmp_path: Path) -> None:
    path = tmp_path / "grinder.toml"
    path.write_text(
        '[deadman]\nenabled = true\nsymbols = ["BTCUSDT"]\ncountdown_s = 17.0\n'
        "renew_interval_s = 5.0\n"
    )
    flags = ["--config", str(path), "--redis-url", "redis://127.0.0.1:1/0"]
    with pytest.raises(ConfigError, match="the switch could trip during a failover"):
        service_options(flags, {})
    assert service_options(["--config", str(path)], {}).deadman.enabled  # alone: no lease
    mainnet = ["--config", str(path), "--venue", "mainnet"]
    with pytest.raises(ConfigError, match="needs ALLOW_MAINNET_TRADE=1"):
        service_options(mainnet, {})
    assert service_options(mainnet, {"ALLOW_MAINNET_TRADE": "1"}).deadman.symbols == ["BTCUSDT"]


# --- the pure decision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"acting": False, "heartbeat_age_s": 999.0}, Withhold.NOT_ACTING),
        ({"lease_left_ms": MIN_WRITE_WINDOW_MS - 1, "stream_live": False}, Withhold.LEASE_ENDING),
        ({"heartbeat_age_s": 61.0, "stream_live": False}, Withhold.EXPECTED_STATE_STALE),
        ({"heartbeat_age_s": float("inf")}, Withhold.EXPECTED_STATE_STALE),
        ({"heartbeat_age_s": float("nan")}, Withhold.EXPECTED_STATE_STALE),
        ({"stream_live": False, "snapshot_age_ms": None}, Withhold.STREAM_NOT_LIVE),
        ({"snapshot_age_ms": None}, Withhold.SNAPSHOT_STALE),
        ({"snapshot_age_ms": 120_001}, Withhold.SNAPSHOT_STALE),
    ],
)
def test_the_first_failing_condition_withholds(change: dict[str, Any], reason: Withhold) -> None:
    assert withhold_reason(replace(HEALTHY, **change)) is reason


def test_healthy_with_enough_lease_left_renews() -> None:
    assert withhold_reason(HEALTHY) is None
    assert withhold_reason(replace(HEALTHY, lease_left_ms=MIN_WRITE_WINDOW_MS)) is None


def test_due_times() -> None:
    assert next_due_ms(SymbolRenewals(), 30_000) is None  # a new leadership renews at once
    assert is_due(SymbolRenewals(), 30_000, 0)
    done = SymbolRenewals(accepted_ms=1_000)
    assert next_due_ms(done, 30_000) == 31_000
    assert not is_due(done, 30_000, 30_999)
    assert is_due(done, 30_000, 31_000)
    failed = SymbolRenewals(accepted_ms=1_000, failed_ms=10_000)
    assert next_due_ms(failed, 30_000) == 25_000


def test_countdown_left_runs_from_the_send() -> None:
    assert countdown_left_ms(SymbolRenewals(), 120_000, 5) is None
    assert countdown_left_ms(SymbolRenewals(accepted_ms=1_000), 120_000, 61_000) == 60_000
    assert countdown_left_ms(SymbolRenewals(accepted_ms=1_000), 120_000, 999_000) == 0


# --- the switch over a port -------------------------------------------------------------------


class Harness:
    def __init__(self, *, symbols: tuple[str, ...] = ("BTCUSDT",)) -> None:
        renew_s = 5.0 * len(symbols)  # the weight bound: 240 a minute with retries
        self.config = DeadmanConfig(
            enabled=True, symbols=list(symbols), countdown_s=3 * renew_s, renew_interval_s=renew_s
        )
        self.port = FakePort()
        self.clock = ManualClock()
        self.health = HEALTHY
        self.token: int | None = 1
        self.audit: list[tuple[str, dict[str, Any]]] = []
        self.registry = CollectorRegistry()
        self.switch = DeadmanSwitch(
            self.config,
            self.port,
            health=lambda: self.health,
            leadership=lambda: self.token,
            open_orders=list,
            metrics=DeadmanMetrics(self.registry),
            clock=self.clock,
            audit_event=lambda e, f: self.audit.append((e, f)),
        )

    def renewals(self) -> list[dict[str, Any]]:
        return [c.args for c in self.port.calls if c.method == "countdown_cancel_all"]

    def tick(self, advance_ms: int = 0) -> None:
        self.clock.advance(advance_ms)
        asyncio.run(self.switch.tick())

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def test_renews_at_once_then_every_interval() -> None:
    h = Harness()
    h.tick()
    assert h.renewals() == [{"symbol": "BTCUSDT", "countdown_ms": 15_000}]
    h.tick(4_999)
    assert len(h.renewals()) == 1
    h.tick(1)
    assert len(h.renewals()) == 2
    assert h.port.wire_windows_ms == [WRITE_WINDOW_MS, WRITE_WINDOW_MS]
    assert h.metric("grinder_deadman_renewals_total", outcome="accepted") == 2
    assert h.metric("grinder_deadman_armed", symbol="BTCUSDT") == 1
    assert h.metric("grinder_deadman_countdown_remaining_seconds", symbol="BTCUSDT") == 15.0
    assert [e for e, _ in h.audit] == ["DEADMAN_RENEWING"]


def test_a_stale_bot_withholds_and_the_countdown_runs_out() -> None:
    h = Harness()
    h.tick()
    h.health = replace(HEALTHY, heartbeat_age_s=120.0)
    for _ in range(15):
        h.tick(1_000)
    assert len(h.renewals()) == 1
    assert h.metric("grinder_deadman_countdown_remaining_seconds", symbol="BTCUSDT") == 0.0
    assert h.metric("grinder_deadman_armed", symbol="BTCUSDT") == 0
    # Counted once per renewal interval while withheld (due from 5 s on: at 5, 10 and 15 s).
    withheld = h.metric("grinder_deadman_renewals_withheld_total", reason="expected_state_stale")
    assert withheld == 3
    assert [e for e, _ in h.audit] == ["DEADMAN_RENEWING", "DEADMAN_RENEWALS_WITHHELD"]
    h.health = HEALTHY
    h.tick()
    assert len(h.renewals()) == 2  # the bot is back: the countdown is set again


def test_a_follower_sends_nothing_and_counts_nothing() -> None:
    h = Harness()
    h.token = None
    h.health = replace(HEALTHY, acting=False)
    for _ in range(10):
        h.tick(1_000)
    assert h.renewals() == []
    assert h.metric("grinder_deadman_renewals_withheld_total", reason="not_acting") is None


def test_a_new_leadership_renews_at_once() -> None:
    h = Harness()
    h.tick()
    h.tick(1_000)
    assert len(h.renewals()) == 1
    h.token = 2
    h.tick()
    assert len(h.renewals()) == 2


def test_a_leadership_lost_between_decision_and_send_withholds_at_the_wire() -> None:
    h = Harness()
    health_reads = iter([HEALTHY, replace(HEALTHY, lease_left_ms=10)])
    h.switch._health = lambda: next(health_reads)
    h.tick()
    assert h.renewals() == []  # the port called authorize, which refused: nothing recorded
    assert h.metric("grinder_deadman_renewals_withheld_total", reason="lease_ending") == 1


def test_the_window_is_bounded_by_the_lease() -> None:
    h = Harness()
    h.health = replace(HEALTHY, lease_left_ms=700)
    h.tick()
    assert h.port.wire_windows_ms == [700]


def test_a_failed_renewal_is_retried_after_half_an_interval() -> None:
    h = Harness()
    h.port.fail_once["countdown_cancel_all"] = TransientExchangeError("503", http_status=503)
    h.tick()
    assert h.metric("grinder_deadman_renewals_total", outcome="rejected") == 1
    h.tick(2_499)
    assert len(h.renewals()) == 1
    h.tick(1)
    assert len(h.renewals()) == 2
    assert h.metric("grinder_deadman_renewals_total", outcome="accepted") == 1


def test_switched_off_stops_the_countdowns_it_set() -> None:
    h = Harness(symbols=("BTCUSDT", "ETHUSDT"))
    h.tick()
    h.switch.set_enabled(False)
    h.tick()
    assert h.renewals()[-2:] == [
        {"symbol": "BTCUSDT", "countdown_ms": 0},
        {"symbol": "ETHUSDT", "countdown_ms": 0},
    ]
    h.tick(10_000)
    assert len(h.renewals()) == 4
    assert h.metric("grinder_deadman_enabled") == 0


def test_the_runbook_example_is_a_table_the_service_accepts(tmp_path: Path) -> None:
    doc = Path(__file__).parents[2] / "docs" / "runbooks" / "13_OPERATOR_CEREMONY.md"
    section = doc.read_text(encoding="utf-8").split("## The Dead-Man Switch", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "grinder.toml"
    path.write_text(block, encoding="utf-8")
    cfg = load_config_file(path).deadman
    assert cfg.enabled
    assert cfg.symbols == ["BTCUSDT"]
    assert (cfg.countdown_s, cfg.renew_interval_s) == (120.0, 30.0)


def test_a_listed_switch_is_checked_at_start_even_when_off(tmp_path: Path) -> None:
    """A reload may switch it on; the rules that need the rest of the settings are checked
    at start whenever symbols are listed."""
    path = tmp_path / "grinder.toml"
    path.write_text(
        '[deadman]\nenabled = false\nsymbols = ["BTCUSDT"]\ncountdown_s = 17.0\n'
        "renew_interval_s = 5.0\n"
    )
    ha = ["--config", str(path), "--redis-url", "redis://127.0.0.1:1/0"]
    with pytest.raises(ConfigError, match="could trip during a failover"):
        service_options(ha, {})
    with pytest.raises(ConfigError, match="needs ALLOW_MAINNET_TRADE=1"):
        service_options(["--config", str(path), "--venue", "mainnet"], {})
    assert not service_options(["--config", str(path)], {}).deadman.enabled


def test_a_failing_stop_is_sent_again_at_the_renewals_pace_not_every_tick() -> None:
    h = Harness()
    h.tick()
    h.switch.set_enabled(False)
    h.port.fail_always["countdown_cancel_all"] = TransientExchangeError("503", http_status=503)
    for _ in range(60):  # a minute of one-second ticks
        h.tick(1_000)
    stops = [r for r in h.renewals() if r["countdown_ms"] == 0]
    # Half the 5 s renewal interval apart at least: on 1 s ticks, every third one.
    assert len(stops) == 20


def test_a_reload_switches_the_switch_off_and_on_and_nothing_else(tmp_path: Path) -> None:
    """The reload path itself (a real config file through the settings part): ``enabled``
    applies at once -- off stops the countdown it set -- and every other field is listed
    as not applied."""
    from prometheus_client import CollectorRegistry as Registry

    from grinder.operator.stores import MemoryOperatorStore
    from grinder.service.metrics import ServiceMetrics
    from grinder.service.settings import ServiceSettings

    path = tmp_path / "grinder.toml"
    table = '[deadman]\nenabled = {on}\nsymbols = ["BTCUSDT"]\ncountdown_s = {c}\n'
    table += "renew_interval_s = 5.0\n"
    path.write_text(table.format(on="true", c="15.0"))
    opts = service_options(["--config", str(path)], {})
    h = Harness()
    settings = ServiceSettings(
        opts,
        clock=h.clock,
        audit=None,
        service_metrics=ServiceMetrics(Registry()),
        mainnet_at_start=False,
        operator_store=MemoryOperatorStore(),
        instance="test",
        operator_mirror=None,
    )
    settings.follow_deadman(h.switch)
    settings.operator.start(settings.configured_settings())
    settings.observe_settings()
    h.tick()  # renewing
    path.write_text(table.format(on="false", c="30.0"))
    reply = settings.reload_config("sighup")
    assert {"field": "deadman.enabled", "old": True, "new": False} in reply["changes"]
    assert reply["not_applied"] == ["deadman.countdown_s"]
    h.tick()
    assert h.renewals()[-1] == {"symbol": "BTCUSDT", "countdown_ms": 0}  # stopped
    path.write_text(table.format(on="true", c="15.0"))
    settings.reload_config("sighup")
    h.tick(1_000)
    assert h.renewals()[-1] == {"symbol": "BTCUSDT", "countdown_ms": 15_000}  # renewing again
