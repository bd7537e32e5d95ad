"""The rules a configuration must keep, checked in one place for start, reload and control.

Identity: no prefix under which an id the exchange (or its own apps) generates could be ours,
and every id remediation can produce fits Binance and parses back. Snapshot pacing: never
more than its share of the IP's request weight. Limits: finite and not negative. A change
that breaks a rule leaves every setting as it was.
"""

from __future__ import annotations

import asyncio
import json
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from grinder.exchange.binance.rest import DEFAULT_WEIGHT_LIMIT
from grinder.ha.config import HaConfig
from grinder.operator.stores import MemoryOperatorStore
from grinder.reconcile.config import ConfigError, ReconcileConfig, RemediationAction
from grinder.reconcile.identity import (
    EXCHANGE_ID_FAMILIES,
    MAX_CLIENT_ORDER_ID_LEN,
    REMEDIATION_SEQ_MAX,
    TS_SECONDS_MAX,
    IdentityRuleError,
    check_identity,
    is_ours,
    parse_client_order_id,
    remediation_client_order_id,
)
from grinder.service.configured import settings_of
from grinder.service.loop import ServiceLoop
from grinder.service.options import (
    MAX_SNAPSHOT_WEIGHT,
    SNAPSHOT_WEIGHT_SHARE,
    ServiceConfig,
    load_config_file,
    snapshot_weight_worst_case,
)
from tests.support.controls import STAMP, make_controls

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "exchange-corpus" / "binance-usdm"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grinder.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- identity: exchange-generated ids are never ours ---------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "autoclose-",  # liquidation
        "autoclose-grinder_",
        "auto",
        "adl_",  # ADL: adl_autoclose, adl_autoclose-123, adl_autoclose_12345
        "adl_autoclose",
        "adl_autoclose_",
        "settlement_",
        "settlement_autoclose-",
        "delivery_autoclose-",
        "web_",  # manual orders from the Binance apps
        "web_st_",
        "w",
        "ios_",
        "android_",
        "electron_",
        "a",
    ],
)
def test_a_prefix_overlapping_an_exchange_id_family_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match=r"client_order_id_prefix: .* never ours"):
        ReconcileConfig(client_order_id_prefix=prefix)


def test_the_liquidation_prefix_is_refused_from_the_file_naming_file_and_key(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[reconcile]\nclient_order_id_prefix = "autoclose-"\n')
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path} [reconcile]: client_order_id_prefix: 'autoclose-'")
    assert "liquidation" in message
    assert "\n" not in message


@pytest.mark.parametrize("prefix", ["grinder_", "g_", "bot2_", "gx_", "Autoclose-", "x-grinder-"])
def test_prefixes_clear_of_every_family_are_accepted(prefix: str) -> None:
    assert ReconcileConfig(client_order_id_prefix=prefix).client_order_id_prefix == prefix


def _corpus_client_ids() -> list[str]:
    keys = ("c", "clientOrderId", "caid", "clientAlgoId", "newClientOrderId")
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in keys and isinstance(value, str) and value:
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(CORPUS.glob("*.json")):
        try:
            walk(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError):
            continue
    stems = tuple(stem for stem, _ in EXCHANGE_ID_FAMILIES)
    return sorted(cid for cid in found if cid.startswith(stems))


def test_the_recorded_exchange_ids_belong_to_the_listed_families() -> None:
    """The families are the ones the recorded traffic shows (liquidation, ADL, settlement,
    delivery, the web app's manual orders)."""
    if not CORPUS.is_dir():
        pytest.skip(f"no wire corpus at {CORPUS}")
    ids = _corpus_client_ids()
    for stem in ("autoclose-", "adl_autoclose", "settlement_autoclose-", "web_"):
        assert any(cid.startswith(stem) for cid in ids), stem


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/"
_EXCHANGE_IDS = [
    "autoclose-1704067200123456",
    "autoclose-d_BTCUSDT_R_1704067200_1",
    "adl_autoclose",
    "adl_autoclose-123",
    "adl_autoclose_12345",
    "adl_autoclose_d_BTCUSDT_1_1704067200_1",
    "settlement_autoclose-1111222233334444",
    "settlement_autoclose-d_BTCUSDT_1_1704067200_1",
    "delivery_autoclose-12345",
    "web_3c5dm4etfEvSlDpirssF",
    "web_st_NH7H4YnClZWvykx",
    "web_d_BTCUSDT_1_1704067200_1",
    "ios_d_BTCUSDT_1_1704067200_1",
    "android_d_BTCUSDT_1_1704067200_1",
    "electron_d_BTCUSDT_1_1704067200_1",
]


@settings(max_examples=300, deadline=None)
@given(prefix=st.text(alphabet=_ALPHABET, min_size=1, max_size=12))
def test_property_no_accepted_prefix_makes_an_exchange_id_ours(prefix: str) -> None:
    try:
        check_identity(prefix, "d")
    except IdentityRuleError:
        return
    allow = frozenset({"d", "autoclose", "st", "3c5dm4etfEvSlDpirssF"})
    for cid in _EXCHANGE_IDS:
        assert parse_client_order_id(cid, prefix) is None, (prefix, cid)
        assert not is_ours(cid, prefix=prefix, strategy_allowlist=allow)


# --- identity: every id remediation can produce round-trips ---------------------------------


def test_a_40_character_strategy_id_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, f'[reconcile]\nstrategy_id = "{"s" * 40}"\n')
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path} [reconcile]: strategy_id: ")
    assert f"over Binance's {MAX_CLIENT_ORDER_ID_LEN}" in message


@pytest.mark.parametrize("strategy", ["my_bot", "d-1", "d.1", "", "d\n"])
def test_a_strategy_id_an_id_cannot_carry_is_refused(strategy: str) -> None:
    with pytest.raises(ValidationError, match=r"strategy_id: .* letters and digits"):
        ReconcileConfig(strategy_id=strategy)


def test_the_longest_strategy_id_that_fits_is_accepted_and_one_more_is_not() -> None:
    # grinder_ + S + _BTCUSDT_R_9999999999_999: 8 + len(S) + 25 characters
    fits = "s" * (MAX_CLIENT_ORDER_ID_LEN - 33)
    assert ReconcileConfig(strategy_id=fits).strategy_id == fits
    with pytest.raises(ValidationError, match="strategy_id"):
        ReconcileConfig(strategy_id=fits + "s")


def test_a_whitelisted_symbol_too_long_for_the_prefix_is_refused_and_fits_with_a_shorter_one() -> (
    None
):
    with pytest.raises(ValidationError, match="symbol_whitelist: remediation ids for 1000PEPEUSDT"):
        ReconcileConfig(symbol_whitelist=["BTCUSDT", "1000PEPEUSDT"])
    config = ReconcileConfig(client_order_id_prefix="g_", symbol_whitelist=["1000PEPEUSDT"])
    assert config.symbol_whitelist == ["1000PEPEUSDT"]


def test_without_a_whitelist_the_symbols_in_scope_are_the_ones_checked() -> None:
    with pytest.raises(ValidationError, match="symbols: remediation ids for BTCUSDT_250328"):
        ReconcileConfig(require_whitelist=False, symbols=["BTCUSDT_250328"])
    # With a required whitelist that is empty nothing can be flattened: only the reference.
    assert ReconcileConfig(symbols=["BTCUSDT_250328"]).symbols == ["BTCUSDT_250328"]


@pytest.mark.parametrize("prefix", ["grinder!", "grinder ", "grïnder_"])
def test_a_prefix_with_characters_binance_refuses_is_refused(prefix: str) -> None:
    with pytest.raises(ValidationError, match=r"client_order_id_prefix: .* characters Binance"):
        ReconcileConfig(client_order_id_prefix=prefix)


def test_an_allowlist_entry_no_id_can_carry_is_refused() -> None:
    with pytest.raises(ValidationError, match="strategy_allowlist: 'my_bot' can never match"):
        ReconcileConfig(strategy_allowlist=["d", "my_bot"])


_TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_SYMBOLS = st.from_regex(r"[A-Z0-9]{2,12}(_[0-9]{6})?", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.text(alphabet=_ALPHABET, min_size=1, max_size=12),
    strategy=_TOKENS,
    whitelist=st.lists(_SYMBOLS, max_size=3),
    ts=st.integers(0, TS_SECONDS_MAX),
    seq=st.integers(1, REMEDIATION_SEQ_MAX),
)
def test_property_an_accepted_identity_never_fails_a_flatten(
    prefix: str, strategy: str, whitelist: list[str], ts: int, seq: int
) -> None:
    """Whatever a config that passes may flatten, its id fits and parses back as ours."""
    try:
        config = ReconcileConfig(
            client_order_id_prefix=prefix, strategy_id=strategy, symbol_whitelist=whitelist
        )
    except ValidationError:
        return
    for symbol in [*whitelist, "BTCUSDT"]:
        cid = remediation_client_order_id(
            strategy_id=strategy, symbol=symbol, ts_seconds=ts, seq=seq, prefix=prefix
        )
        parsed = parse_client_order_id(cid, prefix)
        assert parsed is not None
        assert (parsed.strategy_id, parsed.symbol, parsed.is_remediation) == (
            strategy,
            symbol,
            True,
        )
        assert is_ours(cid, prefix=prefix, strategy_allowlist=config.allowed_strategies)


# --- all or nothing ----------------------------------------------------------------------------


def test_an_assignment_a_whole_config_rule_refuses_leaves_the_value() -> None:
    config = ReconcileConfig()
    with pytest.raises(ValidationError):
        config.client_order_id_prefix = "autoclose-"
    with pytest.raises(ValidationError):
        config.strategy_id = "x" * 40
    with pytest.raises(ValidationError):
        config.symbol_whitelist = ["1000000BOBUSDT"]
    assert (config.client_order_id_prefix, config.strategy_id, config.symbol_whitelist) == (
        "grinder_",
        "d",
        [],
    )


def test_changes_that_only_fit_together_apply_together() -> None:
    config = ReconcileConfig()
    with pytest.raises(ValidationError):
        config.strategy_id = "meanrev7"  # too long with grinder_ alone
    config.apply({"client_order_id_prefix": "g_", "strategy_id": "meanrev7"})
    assert (config.client_order_id_prefix, config.strategy_id) == ("g_", "meanrev7")


def test_a_refused_apply_changes_no_field() -> None:
    config = ReconcileConfig()
    with pytest.raises(ValidationError):
        config.apply({"action": RemediationAction.NONE, "dry_run": False, "strategy_id": "a_b"})
    assert config.dry_run is True
    assert config == ReconcileConfig()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("client_order_id_prefix", "autoclose-", "client_order_id_prefix: 'autoclose-' overlaps"),
        ("client_order_id_prefix", "adl_", "client_order_id_prefix: 'adl_' overlaps"),
        ("strategy_id", "s" * 40, "strategy_id: remediation ids for BTCUSDT"),
        ("strategy_id", "my_bot", "strategy_id: 'my_bot' must be letters and digits"),
        ("symbol_whitelist", "BTCUSDT,1000000BOBUSDT", "symbol_whitelist: remediation ids"),
        ("strategy_allowlist", "d,other_bot", "strategy_allowlist: 'other_bot'"),
        ("cooldown_seconds", "NaN", "cooldown_seconds"),
        ("cooldown_seconds", "-1", "cooldown_seconds"),
        ("max_flatten_notional_usdt", "Infinity", "max_flatten_notional_usdt"),
        ("max_flatten_notional_usdt", "-5", "max_flatten_notional_usdt"),
        ("max_calls_per_day", "9" * 5000, "max_calls_per_day: expected a number, got '9999"),
    ],
)
def test_control_set_refuses_what_the_start_refuses_and_changes_nothing(
    field: str, value: str, needle: str
) -> None:
    config = ReconcileConfig()
    changes: list[tuple[str, str, Any, Any]] = []
    store = MemoryOperatorStore()
    controls = make_controls(config, changes, store=store)
    with pytest.raises(ConfigError) as info:
        asyncio.run(controls.set_field(field, value, STAMP))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 400
    assert config == ReconcileConfig()
    assert changes == []
    assert store.read() is None  # nothing recorded for the deployment either


def test_a_reload_applies_related_changes_together_and_reports_each() -> None:
    config = ReconcileConfig()
    changes: list[tuple[str, str, Any, Any]] = []
    operator = make_controls(config, changes).operator
    fresh = ReconcileConfig(client_order_id_prefix="g_", strategy_id="meanrev7")
    results = operator.reconfigure(settings_of(fresh, False, False, {}), "sighup")
    assert [r["field"] for r in results] == ["client_order_id_prefix", "strategy_id"]
    assert changes == [
        ("sighup", "client_order_id_prefix", "grinder_", "g_"),
        ("sighup", "strategy_id", "d", "meanrev7"),
    ]


# --- snapshot pacing ---------------------------------------------------------------------------

ALLOWED = DEFAULT_WEIGHT_LIMIT * SNAPSHOT_WEIGHT_SHARE


def test_the_snapshot_share_is_a_quarter_of_the_ip_limit() -> None:
    assert (DEFAULT_WEIGHT_LIMIT, SNAPSHOT_WEIGHT_SHARE, ALLOWED) == (2400, 0.25, 600)
    assert MAX_SNAPSHOT_WEIGHT == 85  # positionRisk 5 + openOrders 40 + openAlgoOrders 40


def test_the_default_pacing_spends_a_small_part_of_its_share() -> None:
    svc = ServiceConfig()
    worst = snapshot_weight_worst_case(
        svc.min_snapshot_interval_s, svc.max_snapshot_interval_s, svc.snapshot_weight_per_minute
    )
    assert worst == pytest.approx(85 * 60 / 110)  # the all-symbols form at the 110 s cap


def test_the_starving_pacing_is_refused_from_the_file_naming_file_and_keys(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path, "[service]\nmin_snapshot_interval_s = 0.001\nsnapshot_weight_per_minute = 1e9\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path} [service]: min_snapshot_interval_s: 0.001 s")
    assert "snapshot_weight_per_minute" in message
    assert "over 600 (25% of the IP's 2400)" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"min_snapshot_interval_s": 8.5, "snapshot_weight_per_minute": 1e9}, True),
        ({"min_snapshot_interval_s": 8.4, "snapshot_weight_per_minute": 1e9}, False),
        ({"min_snapshot_interval_s": 0.001, "snapshot_weight_per_minute": 600.0}, True),
        ({"min_snapshot_interval_s": 0.001, "snapshot_weight_per_minute": 601.0}, False),
        (
            {
                "min_snapshot_interval_s": 0.001,
                "max_snapshot_interval_s": 5.0,
                "snapshot_weight_per_minute": 18.0,
            },
            False,
        ),
    ],
)
def test_pacing_is_judged_by_its_worst_case(fields: dict[str, float], ok: bool) -> None:
    if ok:
        ServiceConfig(**fields)
    else:
        with pytest.raises(ValidationError, match="min_snapshot_interval_s"):
            ServiceConfig(**fields)


@settings(max_examples=200, deadline=None)
@given(
    min_s=st.floats(0.001, 200),
    max_s=st.floats(0.001, 200),
    per_minute=st.floats(0.001, 1e9),
    weights=st.lists(st.integers(1, MAX_SNAPSHOT_WEIGHT), min_size=1, max_size=50),
)
def test_property_the_loops_pacing_never_spends_more_than_the_worst_case(
    min_s: float, max_s: float, per_minute: float, weights: list[int]
) -> None:
    """The real interval rule (``ServiceLoop.snapshot_interval_s``) over any run of snapshot
    costs spends at most the bound the configuration is judged by."""
    svc = types.SimpleNamespace(
        min_snapshot_interval_s=min_s,
        max_snapshot_interval_s=max_s,
        snapshot_weight_per_minute=per_minute,
    )
    loop = types.SimpleNamespace(opts=types.SimpleNamespace(service=svc), _last_snapshot_weight=1)
    spent = 0
    elapsed = 0.0
    for weight in weights:
        spent += weight
        loop._last_snapshot_weight = weight
        elapsed += ServiceLoop.snapshot_interval_s(loop)  # type: ignore[arg-type]
    worst = snapshot_weight_worst_case(min_s, max_s, per_minute)
    assert spent / elapsed * 60 <= worst * (1 + 1e-9)


# --- limits: finite, not negative --------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "field", "bad"),
    [
        ("reconcile", "cooldown_seconds", "nan"),
        ("reconcile", "cooldown_seconds", "inf"),
        ("reconcile", "cooldown_seconds", "-1.0"),
        ("reconcile", "max_flatten_notional_usdt", "inf"),
        ("reconcile", "max_flatten_notional_usdt", "-inf"),
        ("reconcile", "max_notional_per_run", "nan"),
        ("reconcile", "max_notional_per_day", "-0.5"),
        ("reconcile", "max_calls_per_day", "-1"),
        ("reconcile", "max_calls_per_run", "-1"),
        ("reconcile", "max_orders_per_action", "-1"),
        ("reconcile", "order_grace_ms", "-1"),
        ("service", "full_pass_interval_s", "nan"),
        ("service", "min_snapshot_interval_s", "inf"),
        ("service", "snapshot_weight_per_minute", "-18.0"),
        ("service", "stream_keepalive_s", "nan"),
        ("service", "triage_retry_ms", "-1"),
        ("service", "incident_trades_margin_s", "nan"),
        ("service", "incident_trades_margin_s", "-1.0"),
        ("service", "incident_trades_every_s", "inf"),
        ("service", "incident_trades_every_s", "0.5"),
        ("ha", "lease_ttl_s", "inf"),
        ("ha", "redis_timeout_s", "nan"),
        ("ha", "safety_margin_s", "-1.0"),
    ],
)
def test_a_limit_that_is_not_finite_or_is_negative_is_refused_naming_it(
    tmp_path: Path, table: str, field: str, bad: str
) -> None:
    path = write(tmp_path, f"[{table}]\n{field} = {bad}\n")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert str(info.value).startswith(f"{path} [{table}]: {field}: ")


def test_a_refused_ha_assignment_leaves_the_value() -> None:
    ha = HaConfig()
    with pytest.raises(ValidationError, match="redis_timeout_s"):
        ha.redis_timeout_s = 100.0
    assert ha.redis_timeout_s == HaConfig().redis_timeout_s


def test_decimal_limits_stay_decimal_after_a_whole_config_check() -> None:
    config = ReconcileConfig()
    config.max_flatten_notional_usdt = Decimal("250.5")
    assert config.max_flatten_notional_usdt == Decimal("250.5")
    assert isinstance(config.max_flatten_notional_usdt, Decimal)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("lease_ttl_s = 30\nredis_timeout_s = 8\n", "redis_timeout_s must be at most 1 s"),
        ("safety_margin_s = 0\n", "safety_margin_s must be at least 0.05 s"),
        ("lease_ttl_s = 0.3\nredis_timeout_s = 0.05\n", "safety_margin_s must be at least 0.05 s"),
    ],
)
def test_ha_timings_that_would_break_the_stop_bound_or_the_fence_are_refused(
    tmp_path: Path, toml: str, needle: str
) -> None:
    path = write(tmp_path, f"[ha]\n{toml}")
    with pytest.raises(ConfigError, match=needle):
        load_config_file(path)


def test_ha_timings_at_the_bounds_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "[ha]\nlease_ttl_s = 30\nredis_timeout_s = 1\nsafety_margin_s = 0.05\n")
    load_config_file(path)


def test_gate_e_cannot_be_switched_off_by_a_huge_age(tmp_path: Path) -> None:
    for bad in ("1e300", "601.0"):
        path = write(tmp_path, f"[reconcile]\nexpected_heartbeat_max_age_s = {bad}\n")
        with pytest.raises(ConfigError, match="expected_heartbeat_max_age_s"):
            load_config_file(path)
    config = ReconcileConfig()
    with pytest.raises(ValidationError):
        config.expected_heartbeat_max_age_s = 1e300
    assert config.expected_heartbeat_max_age_s == 60.0
