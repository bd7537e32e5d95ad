"""ReconcileConfig (runbook 13 usage, defaults, validation, TOML) and strict env parsing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from grinder.config_sources import (
    DEFAULT_AUDIT_PATH,
    DEFAULT_BUDGET_STALE_HOURS,
    RuntimeEnv,
    mainnet_trade_allowed,
    reconcile_from_toml,
)
from grinder.reconcile.config import ConfigError, ReconcileConfig, RemediationAction
from grinder.reconcile.labels import ActionLabel

# --- runbook 13, exactly as written ----------------------------------------------------------


def test_runbook_stage2_dry_run_config_constructs_with_those_values() -> None:
    config = ReconcileConfig(
        # Passive settings (unchanged)
        enabled=True,
        # Remediation settings (dry-run first!)
        action=RemediationAction.CANCEL_ALL,  # Start with cancel only
        dry_run=True,  # CRITICAL: Keep True
        allow_active_remediation=True,  # Allow planning
    )
    assert config.enabled is True
    assert config.action is RemediationAction.CANCEL_ALL
    assert config.dry_run is True
    assert config.allow_active_remediation is True


def test_runbook_stage3_minimal_limits_config_constructs() -> None:
    config = ReconcileConfig(
        enabled=True,
        action=RemediationAction.CANCEL_ALL,
        dry_run=False,
        allow_active_remediation=True,
        max_orders_per_action=1,
        max_symbols_per_action=1,
        cooldown_seconds=300,
    )
    assert config.dry_run is False
    assert config.max_orders_per_action == 1
    assert config.max_symbols_per_action == 1
    assert config.cooldown_seconds == 300.0


def test_runbook_stage4_flatten_with_decimal_notional_limit() -> None:
    config = ReconcileConfig(
        action=RemediationAction.FLATTEN, max_flatten_notional_usdt=Decimal("100")
    )
    assert config.action is RemediationAction.FLATTEN
    assert config.max_flatten_notional_usdt == Decimal("100")
    assert isinstance(config.max_flatten_notional_usdt, Decimal)
    config.max_flatten_notional_usdt = Decimal("500")
    assert config.max_flatten_notional_usdt == Decimal("500")


def test_runbook_stage4_gradual_limit_increase_by_assignment() -> None:
    config = ReconcileConfig(max_orders_per_action=1, max_symbols_per_action=1)
    config.max_orders_per_action = 3
    config.max_orders_per_action = 5
    config.max_symbols_per_action = 2
    config.cooldown_seconds = 60
    assert (config.max_orders_per_action, config.max_symbols_per_action) == (5, 2)
    assert config.cooldown_seconds == 60.0


def test_runbook_rollback_assignments_take_effect_on_the_live_object() -> None:
    config = ReconcileConfig(
        enabled=True,
        action=RemediationAction.CANCEL_ALL,
        dry_run=False,
        allow_active_remediation=True,
    )
    config.action = RemediationAction.NONE
    assert config.action is RemediationAction.NONE
    config.dry_run = True
    assert config.dry_run is True


# --- defaults (CONTRACT §3, §5, §6) ------------------------------------------------------------


def test_defaults_are_the_safe_end_of_the_ceremony() -> None:
    c = ReconcileConfig()
    assert c.enabled is True
    assert c.action is RemediationAction.NONE
    assert c.dry_run is True
    assert c.allow_active_remediation is False
    assert c.cooldown_seconds == 60.0
    assert c.require_whitelist is True
    assert c.symbol_whitelist == []
    assert c.max_flatten_notional_usdt == Decimal("500")
    assert c.max_orders_per_action == 10
    assert c.max_symbols_per_action == 3


def test_default_budget_limits_per_contract() -> None:
    c = ReconcileConfig()
    assert c.max_calls_per_run == 10
    assert c.max_notional_per_run == Decimal("1000")
    assert c.max_calls_per_day == 100
    assert c.max_notional_per_day == Decimal("5000")


def test_default_detection_settings_per_contract() -> None:
    c = ReconcileConfig()
    assert c.order_grace_ms == 5000
    assert c.position_grace_ms == 3000
    assert c.triage_query_budget == 10
    assert c.triage_miss_threshold == 3
    assert c.symbols == []


def test_default_identity_allows_only_own_strategy() -> None:
    c = ReconcileConfig()
    assert c.client_order_id_prefix == "grinder_"
    assert c.strategy_id == "d"
    assert c.allowed_strategies == frozenset({"d"})


def test_allowed_strategies_follow_strategy_id_and_explicit_allowlist() -> None:
    c = ReconcileConfig(strategy_id="x")
    assert c.allowed_strategies == frozenset({"x"})
    c.strategy_allowlist = ["x", "y"]
    assert c.allowed_strategies == frozenset({"x", "y"})
    c.strategy_allowlist = []
    assert c.allowed_strategies == frozenset()


def test_default_lists_are_not_shared_between_instances() -> None:
    a, b = ReconcileConfig(), ReconcileConfig()
    a.symbols.append("BTCUSDT")
    a.symbol_whitelist.append("BTCUSDT")
    assert b.symbols == []
    assert b.symbol_whitelist == []


# --- RemediationAction -------------------------------------------------------------------------


def test_remediation_action_values_match_metric_action_labels() -> None:
    assert RemediationAction.NONE.value == "none"
    assert RemediationAction.CANCEL_ALL.value == ActionLabel.CANCEL_ALL.value == "cancel_all"
    assert RemediationAction.FLATTEN.value == ActionLabel.FLATTEN.value == "flatten"


@pytest.mark.parametrize(
    ("permitted", "wanted", "allowed"),
    [
        (RemediationAction.NONE, RemediationAction.CANCEL_ALL, False),
        (RemediationAction.NONE, RemediationAction.FLATTEN, False),
        (RemediationAction.CANCEL_ALL, RemediationAction.CANCEL_ALL, True),
        (RemediationAction.CANCEL_ALL, RemediationAction.FLATTEN, False),
        (RemediationAction.FLATTEN, RemediationAction.CANCEL_ALL, True),
        (RemediationAction.FLATTEN, RemediationAction.FLATTEN, True),
    ],
)
def test_action_permits_is_an_escalation_ladder(
    permitted: RemediationAction, wanted: RemediationAction, allowed: bool
) -> None:
    assert permitted.permits(wanted) is allowed


def test_action_can_be_given_as_its_string_value() -> None:
    assert ReconcileConfig(action="cancel_all").action is RemediationAction.CANCEL_ALL  # type: ignore[arg-type]


# --- validated assignment ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", "nuke"),
        ("action", "CANCEL_ALL"),
        ("action", None),
        ("dry_run", "yes"),
        ("dry_run", "false"),
        ("dry_run", 0),
        ("dry_run", 1),
        ("dry_run", None),
        ("enabled", "true"),
        ("allow_active_remediation", 1),
        ("require_whitelist", "1"),
        ("max_orders_per_action", -1),
        ("max_orders_per_action", 1.5),
        ("max_orders_per_action", "3"),
        ("max_orders_per_action", True),
        ("max_symbols_per_action", -3),
        ("cooldown_seconds", -1),
        ("cooldown_seconds", float("inf")),
        ("cooldown_seconds", float("nan")),
        ("max_flatten_notional_usdt", Decimal("-1")),
        ("max_flatten_notional_usdt", Decimal("NaN")),
        ("max_flatten_notional_usdt", Decimal("Infinity")),
        ("max_flatten_notional_usdt", "abc"),
        ("max_flatten_notional_usdt", True),
        ("max_notional_per_day", Decimal("-0.01")),
        ("max_calls_per_day", -1),
        ("order_grace_ms", -1),
        ("order_grace_ms", 5000.0),
        ("position_grace_ms", -1),
        ("triage_query_budget", -1),
        ("triage_miss_threshold", 0),
        ("client_order_id_prefix", ""),
        ("symbols", "BTCUSDT"),
        ("symbols", ["BTCUSDT", 1]),
        ("symbol_whitelist", None),
    ],
)
def test_bad_assignment_raises_and_keeps_previous_value(field: str, value: Any) -> None:
    config = ReconcileConfig()
    before = getattr(config, field)
    with pytest.raises(ValidationError):
        setattr(config, field, value)
    assert getattr(config, field) == before


def test_bool_cooldown_is_rejected() -> None:
    config = ReconcileConfig()
    with pytest.raises(ValidationError):
        config.cooldown_seconds = True  # type: ignore[assignment]


def test_typo_attribute_assignment_raises_instead_of_silently_adding_field() -> None:
    config = ReconcileConfig()
    with pytest.raises(ValueError, match="dryrun"):
        config.dryrun = True  # type: ignore[attr-defined]
    assert config.dry_run is True


def test_unknown_constructor_keyword_raises() -> None:
    with pytest.raises(ValidationError, match="dryrun"):
        ReconcileConfig(dryrun=False)  # type: ignore[call-arg]


def test_good_assignments_are_coerced_to_declared_types() -> None:
    config = ReconcileConfig()
    config.action = "flatten"  # type: ignore[assignment]
    config.max_flatten_notional_usdt = 250  # type: ignore[assignment]
    config.symbols = ["BTCUSDT", "ETHUSDT"]
    assert config.action is RemediationAction.FLATTEN
    assert config.max_flatten_notional_usdt == Decimal("250")
    assert isinstance(config.max_flatten_notional_usdt, Decimal)
    assert config.symbols == ["BTCUSDT", "ETHUSDT"]


def test_zero_limits_are_allowed() -> None:
    config = ReconcileConfig(
        max_orders_per_action=0,
        max_flatten_notional_usdt=Decimal("0"),
        triage_query_budget=0,
        order_grace_ms=0,
        cooldown_seconds=0,
    )
    assert config.max_orders_per_action == 0
    assert config.triage_query_budget == 0


def test_summary_is_flat_and_prints_decimals_as_strings() -> None:
    summary = ReconcileConfig(max_flatten_notional_usdt=Decimal("100")).summary()
    assert summary["max_flatten_notional_usdt"] == "100"
    assert summary["max_notional_per_day"] == "5000"
    assert summary["action"] == RemediationAction.NONE
    assert summary["dry_run"] is True


# --- from_mapping / TOML -----------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "grinder.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_from_toml_reads_reconcile_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[reconcile]
action = "cancel_all"
dry_run = false
allow_active_remediation = true
symbols = ["BTCUSDT", "ETHUSDT"]
symbol_whitelist = ["BTCUSDT"]
max_orders_per_action = 1
cooldown_seconds = 300
max_flatten_notional_usdt = "100"
order_grace_ms = 7000
""",
    )
    c = reconcile_from_toml(path)
    assert c.action is RemediationAction.CANCEL_ALL
    assert c.dry_run is False
    assert c.allow_active_remediation is True
    assert c.symbols == ["BTCUSDT", "ETHUSDT"]
    assert c.symbol_whitelist == ["BTCUSDT"]
    assert c.max_orders_per_action == 1
    assert c.cooldown_seconds == 300.0
    assert c.max_flatten_notional_usdt == Decimal("100")
    assert c.order_grace_ms == 7000
    # untouched keys keep their defaults
    assert c.position_grace_ms == 3000
    assert c.require_whitelist is True


def test_from_toml_without_reconcile_table_reads_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, 'action = "flatten"\nmax_flatten_notional_usdt = 250\n')
    c = reconcile_from_toml(path)
    assert c.action is RemediationAction.FLATTEN
    assert c.max_flatten_notional_usdt == Decimal("250")


def test_from_toml_empty_file_gives_defaults(tmp_path: Path) -> None:
    c = reconcile_from_toml(write(tmp_path, ""))
    assert c == ReconcileConfig()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("[reconcile\naction = ", "invalid TOML", id="invalid_toml"),
        pytest.param("reconcile = 5\n", "reconcile", id="non_table_reconcile"),
        pytest.param("[reconcile]\ndryrun = false\n", "dryrun", id="unknown_key"),
    ],
)
def test_from_toml_bad_file_is_config_error_naming_file_and_cause(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        reconcile_from_toml(path)
    msg = str(info.value)
    assert str(path) in msg
    assert needle in msg


def test_from_toml_missing_file_is_config_error_naming_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        reconcile_from_toml(path)
    assert str(path) in str(info.value)


def test_from_toml_directory_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        reconcile_from_toml(tmp_path)


@pytest.mark.parametrize(
    ("line", "field", "shown"),
    [
        ('dry_run = "yes"', "dry_run", "'yes'"),
        ("dry_run = 0", "dry_run", "0"),
        ('enabled = "true"', "enabled", "'true'"),
        ('action = "nuke"', "action", "'nuke'"),
        ("max_orders_per_action = -1", "max_orders_per_action", "-1"),
        ("max_orders_per_action = 1.5", "max_orders_per_action", "1.5"),
        ('max_orders_per_action = "3"', "max_orders_per_action", "'3'"),
        ("order_grace_ms = 5000.0", "order_grace_ms", "5000.0"),
        ("triage_miss_threshold = 0", "triage_miss_threshold", "0"),
        ("cooldown_seconds = inf", "cooldown_seconds", "inf"),
        ("cooldown_seconds = -5", "cooldown_seconds", "-5"),
        ("max_flatten_notional_usdt = nan", "max_flatten_notional_usdt", "nan"),
        ('max_flatten_notional_usdt = "lots"', "max_flatten_notional_usdt", "'lots'"),
        ('symbols = "BTCUSDT"', "symbols", "'BTCUSDT'"),
        ('client_order_id_prefix = ""', "client_order_id_prefix", "''"),
    ],
)
def test_from_toml_wrong_type_or_value_is_config_error_naming_file_field_and_value(
    tmp_path: Path, line: str, field: str, shown: str
) -> None:
    path = write(tmp_path, f"[reconcile]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        reconcile_from_toml(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {field}")
    assert shown in msg


def test_from_mapping_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^cli-overrides: max_symbols_per_action"):
        ReconcileConfig.from_mapping({"max_symbols_per_action": -1}, source="cli-overrides")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_toml_loaded_config_is_still_validated_on_assignment(tmp_path: Path) -> None:
    c = reconcile_from_toml(write(tmp_path, "[reconcile]\ndry_run = false\n"))
    with pytest.raises(ValidationError):
        c.dry_run = "no"  # type: ignore[assignment]
    c.dry_run = True
    assert c.dry_run is True


# --- RuntimeEnv.from_env -----------------------------------------------------------------------

BOOL_VARS = {
    "RECONCILE_DRY_RUN": ("dry_run", True),
    "RECONCILE_ALLOW_ACTIVE": ("allow_active", False),
    "ARMED": ("armed", False),
    "ALLOW_MAINNET_TRADE": ("allow_mainnet_trade", False),
    "GRINDER_AUDIT_ENABLED": ("audit_enabled", False),
}
BAD_BOOLS = ["true", "false", "yes", "no", "", " 1", "1 ", "2", "-1", "abc", "01", "nan", "inf"]


def test_from_env_empty_environment_gives_safe_defaults() -> None:
    env = RuntimeEnv.from_env({})
    assert env.dry_run is True
    assert env.allow_active is False
    assert env.armed is False
    assert env.allow_mainnet_trade is False
    assert env.audit_enabled is False
    assert env.audit_path == DEFAULT_AUDIT_PATH == Path("audit/reconcile.jsonl")
    assert env.budget_state_path is None
    assert env.budget_state_stale_hours == DEFAULT_BUDGET_STALE_HOURS == 24.0


def test_from_env_runbook_live_variables() -> None:
    env = RuntimeEnv.from_env(
        {
            "RECONCILE_DRY_RUN": "0",
            "RECONCILE_ALLOW_ACTIVE": "1",
            "ARMED": "1",
            "ALLOW_MAINNET_TRADE": "1",
        }
    )
    assert (env.dry_run, env.allow_active, env.armed, env.allow_mainnet_trade) == (
        False,
        True,
        True,
        True,
    )


def test_armed_yes_raises_config_error_naming_variable_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeEnv.from_env({"ARMED": "yes"})
    msg = str(info.value)
    assert "ARMED" in msg
    assert "'yes'" in msg


@pytest.mark.parametrize("name", sorted(BOOL_VARS))
@pytest.mark.parametrize(("raw", "value"), [("0", False), ("1", True)])
def test_bool_env_var_accepts_0_and_1(name: str, raw: str, value: bool) -> None:
    attr, _default = BOOL_VARS[name]
    assert getattr(RuntimeEnv.from_env({name: raw}), attr) is value


@pytest.mark.parametrize("name", sorted(BOOL_VARS))
def test_bool_env_var_unset_gives_its_default(name: str) -> None:
    attr, default = BOOL_VARS[name]
    assert getattr(RuntimeEnv.from_env({}), attr) is default


@pytest.mark.parametrize("name", sorted(BOOL_VARS))
@pytest.mark.parametrize("raw", BAD_BOOLS)
def test_bool_env_var_bad_value_raises_naming_variable_and_value(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeEnv.from_env({name: raw})
    msg = str(info.value)
    assert name in msg
    assert repr(raw) in msg


@pytest.mark.parametrize(
    ("name", "attr"),
    [("GRINDER_AUDIT_PATH", "audit_path"), ("BUDGET_STATE_PATH", "budget_state_path")],
)
def test_path_env_vars_accept_paths(name: str, attr: str) -> None:
    env = RuntimeEnv.from_env({name: "/var/lib/grinder/budget.json"})
    assert getattr(env, attr) == Path("/var/lib/grinder/budget.json")


@pytest.mark.parametrize("name", ["GRINDER_AUDIT_PATH", "BUDGET_STATE_PATH"])
@pytest.mark.parametrize("raw", ["", " ", "\t"])
def test_path_env_vars_empty_or_blank_raise_naming_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RuntimeEnv.from_env({name: raw})


@pytest.mark.parametrize(
    ("raw", "value"),
    [("24", 24.0), ("0", 0.0), ("2", 2.0), ("0.5", 0.5), ("48", 48.0), ("1e1", 10.0)],
)
def test_budget_state_stale_hours_accepts_non_negative_numbers(raw: str, value: float) -> None:
    assert RuntimeEnv.from_env({"BUDGET_STATE_STALE_HOURS": raw}).budget_state_stale_hours == value


@pytest.mark.parametrize(
    "raw",
    ["", "abc", "-1", "-0.5", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "true", "24h"],
)
def test_budget_state_stale_hours_bad_value_raises_naming_variable_and_value(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        RuntimeEnv.from_env({"BUDGET_STATE_STALE_HOURS": raw})
    msg = str(info.value)
    assert "BUDGET_STATE_STALE_HOURS" in msg
    assert repr(raw) in msg


@pytest.mark.parametrize("raw", [" 1", "24 ", "2_4"])
def test_budget_state_stale_hours_rejects_whitespace_and_underscores(raw: str) -> None:
    with pytest.raises(ConfigError, match="BUDGET_STATE_STALE_HOURS"):
        RuntimeEnv.from_env({"BUDGET_STATE_STALE_HOURS": raw})


def test_from_env_reports_first_bad_variable_even_when_others_are_fine() -> None:
    with pytest.raises(ConfigError, match="ALLOW_MAINNET_TRADE"):
        RuntimeEnv.from_env({"RECONCILE_DRY_RUN": "0", "ALLOW_MAINNET_TRADE": "true"})


def test_from_env_records_raw_values_of_known_variables_only() -> None:
    env = RuntimeEnv.from_env({"ARMED": "1", "BINANCE_API_SECRET": "s3cr3t"})
    assert env.raw["ARMED"] == "1"
    assert env.raw["RECONCILE_DRY_RUN"] is None
    assert "BINANCE_API_SECRET" not in env.raw
    assert "s3cr3t" not in repr(env)


def test_from_env_without_argument_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*BOOL_VARS, "GRINDER_AUDIT_PATH", "BUDGET_STATE_PATH", "BUDGET_STATE_STALE_HOURS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARMED", "1")
    monkeypatch.setenv("BUDGET_STATE_STALE_HOURS", "12")
    env = RuntimeEnv.from_env()
    assert env.armed is True
    assert env.budget_state_stale_hours == 12.0
    monkeypatch.setenv("ARMED", "on")
    with pytest.raises(ConfigError, match="ARMED"):
        RuntimeEnv.from_env()


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({}, False),
        ({"ALLOW_MAINNET_TRADE": "1"}, True),
        ({"ALLOW_MAINNET_TRADE": "0"}, False),
        ({"ALLOW_MAINNET_TRADE": "true"}, False),
        ({"ALLOW_MAINNET_TRADE": " 1"}, False),
        ({"ALLOW_MAINNET_TRADE": ""}, False),
    ],
)
def test_mainnet_trade_allowed_only_for_exactly_1(env: dict[str, str], allowed: bool) -> None:
    assert mainnet_trade_allowed(env) is allowed


def test_mainnet_trade_allowed_reads_environment_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALLOW_MAINNET_TRADE", "1")
    assert mainnet_trade_allowed() is True
    monkeypatch.delenv("ALLOW_MAINNET_TRADE")
    assert mainnet_trade_allowed() is False
