"""Audit trail (JSONL, rotation, redaction, fail-open), metrics, and the runner end to end."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from grinder.budget.ledger import BudgetState, utc_day
from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.clock import ManualClock, wall_clock_ms
from grinder.config_sources import RuntimeEnv
from grinder.exchange.binance.errors import IpBanned, RateLimited, RequestRejected
from grinder.exchange.binance.ip_limits import not_sent
from grinder.exchange.fake import FakePort
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.labels import ActionLabel, BlockReason, ResultStatus, SkipReason
from grinder.reconcile.types import (
    MismatchType,
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    Side,
)
from grinder.redaction import REDACTED, redact
from grinder.remediation.executor import RemediationExecutor
from grinder.remediation.runner import ReconcileRunner
from grinder.reporting.audit import AuditWriter, encode_record
from grinder.reporting.metrics import RecentCount, ReconcileMetrics, exposition
from grinder.reporting.report import Reporter
from grinder.service.app import ReconcileService
from grinder.service.artifacts import write_metrics_summary
from grinder.service.metrics import ServiceMetrics
from grinder.service.options import ServiceOptions
from grinder.service.venue import credentials_for
from grinder.state.expected import MemoryExpectedStore
from grinder.state.observed import ObservedStore

# 2024-01-01 12:00:00 UTC
NOW = 1_704_110_400_000
OURS = "grinder_d_BTCUSDT_1_1704067200_1"


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [_strict_loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _strict_loads(line: str) -> Any:
    """RFC 8259 JSON only: NaN/Infinity are not JSON."""
    return json.loads(line, parse_constant=_reject_constant)


# --- AuditWriter: format ---------------------------------------------------------------------


def test_each_record_is_one_json_object_per_line_with_sorted_keys(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "reconcile.jsonl"
    w = AuditWriter(path)
    assert w.write("RECONCILE_RUN", {"run_id": "r1", "ts_ms": NOW, "mode": "dry_run", "b": 1})
    assert w.write("REMEDIATE_RESULT", {"zeta": 1, "alpha": {"y": 1, "x": 2}, "ts_ms": NOW})
    raw = path.read_text(encoding="utf-8")
    assert raw.endswith("\n")
    lines = raw.splitlines()
    assert len(lines) == 2
    for line in lines:
        obj = _strict_loads(line)
        assert isinstance(obj, dict)
        assert list(obj) == sorted(obj)
        assert obj["schema_version"] == 1
        assert "\n" not in line
    second = _strict_loads(lines[1])
    assert list(second["alpha"]) == ["x", "y"]
    assert _strict_loads(lines[0])["event_type"] == "RECONCILE_RUN"


def test_fields_cannot_override_schema_version_or_event_type(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditWriter(path).write("REMEDIATE_RESULT", {"schema_version": 99, "event_type": "OTHER"})
    (rec,) = read_lines(path)
    assert (rec["schema_version"], rec["event_type"]) == (1, "REMEDIATE_RESULT")


def test_decimal_enum_and_path_are_serialised_as_strings(tmp_path: Path) -> None:
    class Color(Enum):
        RED = "red"

    path = tmp_path / "a.jsonl"
    AuditWriter(path).write(
        "X",
        {
            "notional": Decimal("1234.5000"),
            "qty": Decimal("0.001"),
            "color": Color.RED,
            "where": Path("/tmp/x"),
        },
    )
    text = path.read_text()
    assert '"notional":"1234.5000"' in text
    assert '"qty":"0.001"' in text
    obj = read_lines(path)[0]
    assert (obj["notional"], obj["color"], obj["where"]) == ("1234.5000", "red", "/tmp/x")


def test_writer_appends_and_never_truncates_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditWriter(path).write("A", {"n": 1})
    AuditWriter(path).write("B", {"n": 2})
    assert [r["n"] for r in read_lines(path)] == [1, 2]


def test_encode_record_is_compact_sorted_and_redacted() -> None:
    line = encode_record({"b": 1, "a": {"token": "t0k"}, "c": Decimal("2")})
    assert line == '{"a":{"token":"' + REDACTED + '"},"b":1,"c":"2"}'


# --- AuditWriter: rotation -------------------------------------------------------------------


def _seqs(path: Path) -> list[int]:
    return [r["seq"] for r in read_lines(path)] if path.exists() else []


def test_rotation_by_event_count_keeps_backup_count_files_and_drops_oldest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reconcile.jsonl"
    w = AuditWriter(path, max_events=3, backup_count=2)
    for i in range(1, 11):
        assert w.write("E", {"seq": i})
    assert _seqs(path) == [10]
    assert _seqs(tmp_path / "reconcile.jsonl.1") == [7, 8, 9]
    assert _seqs(tmp_path / "reconcile.jsonl.2") == [4, 5, 6]
    assert not (tmp_path / "reconcile.jsonl.3").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "reconcile.jsonl",
        "reconcile.jsonl.1",
        "reconcile.jsonl.2",
    ]


def test_rotation_by_size_keeps_every_file_within_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.jsonl"
    line_len = len(encode_record({"schema_version": 1, "event_type": "E", "seq": 1})) + 1
    w = AuditWriter(path, max_bytes=line_len * 2 + 1, backup_count=3)
    for i in range(1, 8):
        assert w.write("E", {"seq": i})
    assert _seqs(path) == [7]
    assert _seqs(tmp_path / "reconcile.jsonl.1") == [5, 6]
    assert _seqs(tmp_path / "reconcile.jsonl.2") == [3, 4]
    assert _seqs(tmp_path / "reconcile.jsonl.3") == [1, 2]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= line_len * 2 + 1


def test_record_larger_than_max_bytes_is_still_written_alone(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.jsonl"
    w = AuditWriter(path, max_bytes=10, backup_count=5)
    for i in range(3):
        assert w.write("E", {"seq": i})
    assert _seqs(path) == [2]
    assert _seqs(tmp_path / "reconcile.jsonl.1") == [1]
    assert _seqs(tmp_path / "reconcile.jsonl.2") == [0]


def test_rotation_with_zero_backups_discards_the_full_file(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.jsonl"
    w = AuditWriter(path, max_events=2, backup_count=0)
    for i in range(5):
        w.write("E", {"seq": i})
    assert _seqs(path) == [4]
    assert [p.name for p in tmp_path.iterdir()] == ["reconcile.jsonl"]


def test_rotation_counts_records_already_in_the_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.jsonl"
    first = AuditWriter(path, max_events=3)
    first.write("E", {"seq": 1})
    first.write("E", {"seq": 2})
    second = AuditWriter(path, max_events=3)  # e.g. after a restart
    second.write("E", {"seq": 3})
    second.write("E", {"seq": 4})
    assert _seqs(path) == [4]
    assert _seqs(tmp_path / "reconcile.jsonl.1") == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs", [{"max_bytes": 0}, {"max_events": 0}, {"backup_count": -1}], ids=str
)
def test_writer_rejects_nonsensical_bounds(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        AuditWriter(tmp_path / "a.jsonl", **kwargs)


# --- AuditWriter: redaction ------------------------------------------------------------------

SECRET_KEYS = [
    "api_key",
    "apiKey",
    "API_KEY",
    "secret",
    "apiSecret",
    "api_secret",
    "token",
    "access_token",
    "signature",
    "password",
    "authorization",
    "Authorization",
    "X-MBX-APIKEY",
    "x-mbx-apikey",
    "listenKey",
    "listen_key",
    "passphrase",
    "private_key",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_redacted_at_any_depth(tmp_path: Path, key: str) -> None:
    path = tmp_path / "a.jsonl"
    secret = "s3cr3tVALUE42"
    AuditWriter(path).write(
        "E",
        {
            key: secret,
            "headers": {key: secret, "nested": [{key: secret}, ({key: secret},)]},
            "symbol": "BTCUSDT",
        },
    )
    text = path.read_text()
    assert secret not in text
    rec = read_lines(path)[0]
    assert rec[key] == REDACTED
    assert rec["headers"][key] == REDACTED
    assert rec["headers"]["nested"][0][key] == REDACTED
    assert rec["headers"]["nested"][1][0][key] == REDACTED
    assert rec["symbol"] == "BTCUSDT"


def test_secret_key_with_structured_value_is_redacted_whole() -> None:
    out = redact({"secret": {"a": "x", "b": ["y"]}, "ok": 1})
    assert out == {"secret": REDACTED, "ok": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timestamp=1&signature=abcdef", f"timestamp=1&signature={REDACTED}"),
        (
            "GET /fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature=abcdef&recvWindow=5000",
            f"GET /fapi/v1/order?symbol=BTCUSDT&timestamp=1&signature={REDACTED}&recvWindow=5000",
        ),
        ("X-MBX-APIKEY: abcdef", f"X-MBX-APIKEY: {REDACTED}"),
        ("apiKey=abcdef", f"apiKey={REDACTED}"),
        ("api_key=abcdef other", f"api_key={REDACTED} other"),
        ("/private/ws?listenKey=abcdef&events=ORDER_TRADE_UPDATE", None),
        ("password: abcdef", f"password: {REDACTED}"),
        ("SIGNATURE=abcdef", f"SIGNATURE={REDACTED}"),
    ],
)
def test_secrets_inside_strings_are_redacted(text: str, expected: str | None) -> None:
    out = redact({"error": text})["error"]
    assert "abcdef" not in out
    if expected is not None:
        assert out == expected


def test_text_without_secrets_is_left_alone() -> None:
    text = "Order does not exist. (code -2013) symbol=BTCUSDT side=BUY"
    assert redact({"error": text}) == {"error": text}
    assert redact({"client_order_id": OURS}) == {"client_order_id": OURS}


@pytest.mark.parametrize(
    "text",
    [
        "request failed: params={'symbol': 'BTCUSDT', 'signature': 'abcdef'}",
        'body={"apiKey": "abcdef"}',
        'body={"listenKey":"abcdef","x":1}',
        "Authorization: Bearer abcdef",
        "authorization=Bearer abcdef",
    ],
    ids=["dict_repr", "json_text", "json_compact", "bearer_header", "bearer_param"],
)
def test_secrets_inside_structured_text_are_redacted(text: str) -> None:
    out = redact({"error": text})["error"]
    assert "abcdef" not in out
    assert REDACTED in out


def test_structured_text_keeps_non_secret_fields() -> None:
    out = redact({"error": "params={'symbol': 'BTCUSDT', 'signature': 'abcdef'}"})["error"]
    assert "'symbol': 'BTCUSDT'" in out


# --- AuditWriter: fail-open ------------------------------------------------------------------


def test_unwritable_path_returns_false_counts_calls_on_error_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("grinder"), "propagate", True)
    blocker = tmp_path / "regular_file"
    blocker.write_text("not a directory")
    errors: list[Exception] = []
    w = AuditWriter(blocker / "reconcile.jsonl", on_error=errors.append)
    with caplog.at_level(logging.WARNING, logger="grinder"):
        assert w.write("RECONCILE_RUN", {"run_id": "r"}) is False
        assert w.write("RECONCILE_RUN", {"run_id": "r"}) is False
    assert w.errors == 2
    assert len(errors) == 2
    assert all(isinstance(e, OSError) for e in errors)
    assert any("AUDIT_WRITE_FAILED" in r.getMessage() for r in caplog.records)
    assert blocker.read_text() == "not a directory"


def test_unserialisable_value_is_fail_open(tmp_path: Path) -> None:
    errors: list[Exception] = []
    w = AuditWriter(tmp_path / "a.jsonl", on_error=errors.append)
    assert w.write("E", {"obj": object()}) is False
    assert w.errors == 1
    assert len(errors) == 1
    assert w.write("E", {"ok": 1}) is True
    assert read_lines(tmp_path / "a.jsonl") == [{"event_type": "E", "ok": 1, "schema_version": 1}]


def test_writer_recovers_when_the_path_becomes_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "audit"
    blocker.write_text("x")
    w = AuditWriter(blocker / "reconcile.jsonl")
    assert w.write("E", {"seq": 1}) is False
    blocker.unlink()
    assert w.write("E", {"seq": 2}) is True
    assert _seqs(blocker / "reconcile.jsonl") == [2]


def test_non_finite_float_still_gives_a_valid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    w = AuditWriter(path)
    assert w.write("E", {"age": float("nan"), "lag": [float("inf"), float("-inf")]}) is True
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert isinstance(_strict_loads(lines[0]), dict)


# --- property: redaction over arbitrary nested records ---------------------------------------

_MARKER = st.text(alphabet="0123456789ABCDEF", min_size=10, max_size=10).map(
    lambda h: "ZQXSECRET" + h
)
_SAFE_KEYS = st.sampled_from(
    ["symbol", "qty", "side", "run_id", "mode", "action", "a", "b", "items", "details", "params"]
)
_SAFE_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -._/", max_size=20)
_TEXT_PARAMS = [
    "signature",
    "apiKey",
    "api_key",
    "api-key",
    "listenKey",
    "secret",
    "token",
    "password",
    "X-MBX-APIKEY",
]


@st.composite
def _secret_in_text(draw: st.DrawFn) -> str:
    """A secret inside free text: query string, header, dict repr or JSON."""
    param = draw(st.sampled_from(_TEXT_PARAMS))
    marker = draw(_MARKER)
    style = draw(st.sampled_from(["query", "repr", "json", "bearer"]))
    if style == "bearer":
        return f"Authorization: Bearer {marker}"
    if style == "repr":
        return f"params={{'symbol': 'BTCUSDT', '{param}': '{marker}'}}"
    if style == "json":
        return f'body={{"{param}": "{marker}", "code": -1022}}'
    sep = draw(st.sampled_from(["=", ": ", ":"]))
    prefix = draw(st.sampled_from(["", "timestamp=1&", "GET /fapi/v1/order?symbol=BTCUSDT&"]))
    suffix = draw(st.sampled_from(["", "&recvWindow=5000", " more text", ", next"]))
    return f"{prefix}{param}{sep}{marker}{suffix}"


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    _SAFE_TEXT,
    _secret_in_text(),
)
_SECRET_VALUE = st.one_of(
    _MARKER,
    st.lists(_MARKER, max_size=3),
    st.dictionaries(_SAFE_KEYS, _MARKER, max_size=3),
)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    entry = st.one_of(
        st.tuples(_SAFE_KEYS, children),
        st.tuples(st.sampled_from(SECRET_KEYS), _SECRET_VALUE),
    )
    return st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.lists(entry, max_size=4).map(dict),
    )


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    """A record with secret-named keys (holding secret values) at the top and nested."""
    top = draw(st.lists(st.tuples(st.sampled_from(SECRET_KEYS), _SECRET_VALUE), max_size=3))
    tree = draw(st.recursive(_SCALARS, _extend, max_leaves=15))
    return {**dict(top), "payload": tree}


def _markers(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _markers(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _markers(v)
    elif isinstance(value, str) and "ZQXSECRET" in value:
        start = value.index("ZQXSECRET")
        yield value[start : start + len("ZQXSECRET") + 10]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=st.lists(_records(), min_size=1, max_size=4))
def test_no_secret_value_ever_reaches_the_audit_file(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    directory = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    path = directory / "reconcile.jsonl"
    w = AuditWriter(path, max_events=2, backup_count=10)
    for rec in records:
        assert w.write("REMEDIATE_RESULT", rec) is True
    secrets = {m for rec in records for m in _markers(rec)}
    lines = 0
    for f in sorted(directory.iterdir()):
        text = f.read_text(encoding="utf-8")
        for line in text.splitlines():
            obj = _strict_loads(line)
            assert isinstance(obj, dict)
            assert obj["schema_version"] == 1
            lines += 1
        for s in secrets:
            assert s not in text
        assert "ZQXSECRET" not in text
    assert lines == len(records)


# --- ReconcileMetrics ------------------------------------------------------------------------


def samples(metrics: ReconcileMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: ReconcileMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def contract_series() -> list[tuple[str, dict[str, str]]]:
    series: list[tuple[str, dict[str, str]]] = [
        ("grinder_reconcile_runs_total", {}),
        ("grinder_reconcile_last_snapshot_age_seconds", {}),
        ("grinder_reconcile_runs_with_mismatch_total", {}),
        ("grinder_reconcile_last_remediation_ts_ms", {}),
        ("grinder_reconcile_budget_calls_used_day", {}),
        ("grinder_reconcile_budget_notional_used_day", {}),
        ("grinder_reconcile_budget_calls_remaining_day", {}),
        ("grinder_reconcile_budget_notional_remaining_day", {}),
        ("grinder_ha_is_leader", {}),
    ]
    series += [("grinder_reconcile_mismatch_total", {"type": t.value}) for t in MismatchType]
    for action in ("cancel_all", "flatten"):
        series += [
            ("grinder_reconcile_runs_with_remediation_total", {"action": action}),
            ("grinder_reconcile_action_planned_total", {"action": action}),
            ("grinder_reconcile_action_executed_total", {"action": action}),
        ]
    series += [("grinder_reconcile_action_blocked_total", {"reason": b.value}) for b in BlockReason]
    return series


def test_every_contract_series_is_exposed_from_the_start_at_zero_but_the_snapshot_age() -> None:
    m = ReconcileMetrics(CollectorRegistry())
    got = samples(m)
    missing = [
        (name, labels)
        for name, labels in contract_series()
        if (name, frozenset(labels.items())) not in got
    ]
    assert missing == []
    nonzero = {
        (name, tuple(sorted(labels.items()))): got[(name, frozenset(labels.items()))]
        for name, labels in contract_series()
        if got[(name, frozenset(labels.items()))] != 0
    }
    # No snapshot yet: infinitely old, never "fresh" (0), and above the alert's 120 s.
    assert nonzero == {("grinder_reconcile_last_snapshot_age_seconds", ()): math.inf}
    text = m.exposition().decode().splitlines()
    assert "grinder_reconcile_last_snapshot_age_seconds +Inf" in text


def test_exposition_text_has_the_runbook_grep_lines() -> None:
    text = ReconcileMetrics(CollectorRegistry()).exposition().decode()
    for line in [
        "grinder_reconcile_runs_total 0.0",
        'grinder_reconcile_mismatch_total{type="ORDER_EXISTS_UNEXPECTED"} 0.0',
        'grinder_reconcile_mismatch_total{type="POSITION_NONZERO_UNEXPECTED"} 0.0',
        'grinder_reconcile_action_planned_total{action="cancel_all"} 0.0',
        'grinder_reconcile_action_planned_total{action="flatten"} 0.0',
        'grinder_reconcile_action_executed_total{action="cancel_all"} 0.0',
        'grinder_reconcile_action_blocked_total{reason="env_var_missing"} 0.0',
    ]:
        assert line in text.splitlines()


def test_metric_types_match_contract() -> None:
    text = ReconcileMetrics(CollectorRegistry()).exposition().decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    for counter in [
        "grinder_reconcile_runs",
        "grinder_reconcile_mismatch",
        "grinder_reconcile_runs_with_mismatch",
        "grinder_reconcile_runs_with_remediation",
        "grinder_reconcile_action_planned",
        "grinder_reconcile_action_executed",
        "grinder_reconcile_action_blocked",
    ]:
        assert types[counter] == "counter", counter
    for gauge in [
        "grinder_reconcile_last_snapshot_age_seconds",
        "grinder_reconcile_last_remediation_ts_ms",
        "grinder_reconcile_budget_calls_used_day",
        "grinder_reconcile_budget_notional_used_day",
        "grinder_reconcile_budget_calls_remaining_day",
        "grinder_reconcile_budget_notional_remaining_day",
        "grinder_ha_is_leader",
    ]:
        assert types[gauge] == "gauge", gauge


def test_recent_count_is_a_sliding_hour_in_bounded_buckets() -> None:
    recent = RecentCount()
    for i in range(20):  # 20 plans in the last 30 minutes
        recent.add(NOW - 30 * 60_000 + i * 90_000)
    recent.add(NOW - 2 * 3_600_000)  # long before: pruned
    assert recent.count(NOW) == 20
    # An event counts for the hour after the end of its second, never less.
    first = NOW - 30 * 60_000
    assert recent.count(first + 3_600_000) == 20
    assert recent.count(first + 3_600_000 + 1_000) == 19
    assert recent.count(NOW + 3_600_000 + 1_000) == 0
    # Any number of events: at most one bucket per second of the window.
    many = RecentCount()
    for i in range(10_000):
        many.add(NOW + i * 100)
    assert many.count(NOW + 999_900) == 10_000
    assert len(many._buckets) <= 3_601


def test_planned_last_hour_is_evaluated_at_each_scrape() -> None:
    clock = ManualClock(NOW)
    m = ReconcileMetrics(CollectorRegistry(), clock=clock)
    m.observe_planned(ActionLabel.CANCEL_ALL.value, NOW - 1_000)
    m.observe_planned(ActionLabel.FLATTEN.value, NOW - 1_800_000)
    assert value(m, "grinder_reconcile_action_planned_last_hour", action="cancel_all") == 1
    assert value(m, "grinder_reconcile_action_planned_last_hour", action="flatten") == 1
    assert m.planned_in_last_hour() == {"cancel_all": 1, "flatten": 1}
    assert value(m, "grinder_reconcile_action_planned_total", action="flatten") == 1
    clock.set(NOW + 1_801_000)  # the flatten is over an hour old: no longer counted
    assert m.planned_in_last_hour() == {"cancel_all": 1, "flatten": 0}
    assert value(m, "grinder_reconcile_action_planned_last_hour", action="flatten") == 0
    assert value(m, "grinder_reconcile_action_planned_total", action="flatten") == 1


def test_last_remediation_gauge_only_moves_forward() -> None:
    m = ReconcileMetrics(CollectorRegistry())
    m.observe_last_remediation(None)
    assert value(m, "grinder_reconcile_last_remediation_ts_ms") == 0
    m.observe_last_remediation(NOW)
    m.observe_last_remediation(NOW - 5_000)  # an older anchor read later
    assert value(m, "grinder_reconcile_last_remediation_ts_ms") == NOW


def test_two_registries_do_not_interfere() -> None:
    a = ReconcileMetrics(CollectorRegistry())
    b = ReconcileMetrics(CollectorRegistry())
    a.planned.labels(action=ActionLabel.CANCEL_ALL.value).inc()
    a.runs.inc(3)
    assert value(a, "grinder_reconcile_action_planned_total", action="cancel_all") == 1
    assert value(a, "grinder_reconcile_runs_total") == 3
    assert value(b, "grinder_reconcile_action_planned_total", action="cancel_all") == 0
    assert value(b, "grinder_reconcile_runs_total") == 0


def test_detection_latency_has_a_series_per_mismatch_type_from_the_start() -> None:
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    text = generate_latest(registry).decode()
    for kind in MismatchType:
        line = f'grinder_reconcile_detection_latency_seconds_count{{type="{kind.value}"}} 0.0'
        assert line in text


def test_exposition_leaves_out_created_and_writes_ms_timestamps_as_integers(
    tmp_path: Path,
) -> None:
    """What the runbook's `curl … | grep grinder_reconcile` shows: no `_created` series (the
    library adds one per counter and histogram series), and the last remediation's time as the
    integer it is. The library's own output of the same registry has both problems."""
    registry = CollectorRegistry()
    metrics = ReconcileMetrics(registry)
    ServiceMetrics(registry)
    metrics.observe_last_remediation(1_796_662_474_179)
    raw = generate_latest(registry).decode()
    assert "grinder_reconcile_runs_created" in raw
    assert "grinder_reconcile_last_remediation_ts_ms 1.796662474179e+12" in raw.splitlines()
    text = exposition(registry).decode()
    assert "_created" not in text
    assert "grinder_reconcile_last_remediation_ts_ms 1796662474179" in text.splitlines()
    assert metrics.exposition().decode() == text

    # The same samples otherwise, and the text still parses as Prometheus text.
    def kept(t: str) -> set[tuple[str, str, float]]:
        return {
            (s.name, json.dumps(s.labels, sort_keys=True), s.value)
            for f in text_string_to_metric_families(t)
            for s in f.samples
            if not s.name.endswith("_created")
        }

    assert kept(text) == kept(raw)
    summary = tmp_path / "summary.json"
    write_metrics_summary(summary, registry, {})
    written = json.loads(summary.read_text())["metrics"]
    assert written["grinder_reconcile_last_remediation_ts_ms"] == 1_796_662_474_179
    assert '"grinder_reconcile_last_remediation_ts_ms": 1796662474179' in summary.read_text()
    assert not [k for k in written if "_created" in k]


# --- ReconcileRunner end to end ---------------------------------------------------------------


class E2E:
    """Engine + executor + Reporter(metrics, audit) over a FakePort, as the service wires it."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        dry_run: bool = True,
        action: RemediationAction = RemediationAction.CANCEL_ALL,
        audit_path: Path | None = None,
    ) -> None:
        self.clock = ManualClock(NOW)
        self.config = ReconcileConfig(
            enabled=True,
            action=action,
            dry_run=dry_run,
            allow_active_remediation=True,
        )
        self.port = FakePort()
        self.expected = MemoryExpectedStore()
        self.expected.heartbeat()  # the bot runs in this process: its state is live (gate E)
        self.observed = ObservedStore()
        self.engine = ReconcileEngine(self.config, self.expected, self.observed)
        self.env = {"ALLOW_MAINNET_TRADE": "1"}
        self.leader = True
        self.executor = RemediationExecutor(
            config=self.config,
            port=self.port,
            armed=not dry_run,
            symbol_whitelist=["BTCUSDT"],
            env=self.env,
            clock=self.clock,
            is_leader=lambda: self.leader,
            expected_heartbeat_age=lambda: self.expected.heartbeat_age_s(self.clock()),
        )
        self.metrics = ReconcileMetrics(CollectorRegistry(), clock=self.clock)
        self.audit_path = audit_path or tmp_path / "audit" / "reconcile.jsonl"
        self.audit = AuditWriter(self.audit_path)
        self.reporter = Reporter(metrics=self.metrics, audit=self.audit)
        self.runner = ReconcileRunner(
            self.engine, self.executor, reporter=self.reporter, clock=self.clock
        )

    def unexpected_order(self, cid: str = OURS) -> None:
        o = ObservedOrder(
            client_order_id=cid,
            symbol="BTCUSDT",
            side=Side.BUY,
            status=OrderStatus.NEW,
            qty=Decimal("0.01"),
            price=Decimal("40000"),
            created_ts_ms=NOW - 60_000,
            update_ts_ms=NOW - 60_000,
        )
        self.port.add_order(o)
        self.snapshot()

    def unexpected_position(self, qty: str = "0.01") -> None:
        self.port.mark_prices["BTCUSDT"] = Decimal("40000")
        self.port.step_sizes["BTCUSDT"] = Decimal("0.001")
        self.port.set_position("BTCUSDT", Decimal(qty))
        self.snapshot()

    def snapshot(self) -> None:
        sent = self.clock() - 1_000
        self.observed.apply_open_orders_snapshot(
            [
                ObservedOrder(
                    client_order_id=o.client_order_id,
                    symbol=o.symbol,
                    side=o.side,
                    status=o.status,
                    qty=o.qty,
                    price=o.price,
                    created_ts_ms=o.created_ts_ms,
                    update_ts_ms=o.update_ts_ms,
                )
                for o in self.port.open_orders.values()
            ],
            sent,
        )
        self.observed.apply_positions_snapshot(
            [
                ObservedPosition(
                    symbol=p.symbol,
                    qty=p.qty,
                    position_side=p.position_side,
                    mark_price=self.port.mark_prices.get(p.symbol),
                    update_ts_ms=sent - 10_000,
                )
                for p in self.port.positions.values()
                if p.qty != 0
            ],
            sent - 10_000,
        )

    def value(self, name: str, **labels: str) -> float:
        return value(self.metrics, name, **labels)

    def audit_records(self) -> list[dict[str, Any]]:
        return read_lines(self.audit_path) if self.audit_path.exists() else []


@pytest.fixture
def grinder_caplog(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    # configure_logging() elsewhere may turn propagation off; the test needs the records.
    monkeypatch.setattr(logging.getLogger("grinder"), "propagate", True)
    caplog.set_level(logging.INFO, logger="grinder")
    return caplog


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().split(" ", 1)[0] == name]


async def test_dry_run_unexpected_order_plans_a_cancel_and_reports_it_everywhere(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=True)
    e.unexpected_order()
    report = await e.runner.run_once()

    assert report.planned_count == 1
    assert e.port.write_calls == []
    assert e.value("grinder_reconcile_action_planned_total", action="cancel_all") == 1
    assert e.value("grinder_reconcile_action_planned_total", action="flatten") == 0
    assert e.value("grinder_reconcile_action_executed_total", action="cancel_all") == 0
    assert e.value("grinder_reconcile_runs_total") == 1
    assert e.value("grinder_reconcile_runs_with_mismatch_total") == 1
    assert e.value("grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED") == 1
    assert e.value("grinder_reconcile_runs_with_remediation_total", action="cancel_all") == 0
    assert e.value("grinder_reconcile_action_planned_last_hour", action="cancel_all") == 1
    assert e.value("grinder_reconcile_action_planned_last_hour", action="flatten") == 0

    planned = events(grinder_caplog, "REMEDIATION_PLANNED")
    assert len(planned) == 1
    assert OURS in planned[0]
    assert len(events(grinder_caplog, "RECONCILE_RUN")) == 1
    assert any(OURS in m for m in events(grinder_caplog, "RECONCILE_MISMATCH"))

    recs = e.audit_records()
    assert [r["event_type"] for r in recs] == [
        "REMEDIATE_ATTEMPT",
        "REMEDIATE_RESULT",
        "RECONCILE_RUN",
    ]
    for r in recs:
        assert r["schema_version"] == 1
        assert isinstance(r["ts_ms"], int)
        assert r["ts_ms"] == NOW
        assert r["run_id"] == report.run_id
        assert r["mode"] == "dry_run"
        assert r["action"] == "cancel_all"
    result = recs[1]
    assert result["status"] == "PLANNED"
    assert result["client_order_id"] == OURS
    assert result["block_reason"] is None
    run = recs[2]
    assert run["mismatch_counts"]["ORDER_EXISTS_UNEXPECTED"] == 1
    assert (run["planned_count"], run["executed_count"], run["blocked_count"]) == (1, 0, 0)
    assert run["symbols"] == ["BTCUSDT"]


async def test_persisting_mismatch_is_counted_once_across_runs(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=True)
    e.unexpected_order()
    for i in range(3):
        e.clock.set(NOW + i * 10_000)
        e.snapshot()
        await e.runner.run_once()
    assert e.value("grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED") == 1
    assert e.value("grinder_reconcile_runs_with_mismatch_total") == 3
    assert e.value("grinder_reconcile_runs_total") == 3
    assert len(events(grinder_caplog, "RECONCILE_MISMATCH")) == 1
    # Dry-run plans the standing mismatch once; later runs skip it as already planned.
    assert e.value("grinder_reconcile_action_planned_total", action="cancel_all") == 1
    assert e.value("grinder_reconcile_action_skipped_total", reason="already_planned") == 2
    assert e.value("grinder_reconcile_action_blocked_total", reason="cooldown_not_elapsed") == 0


async def test_live_run_executes_cancel_and_updates_execution_metrics(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=False)
    e.unexpected_order()
    report = await e.runner.run_once()
    assert report.executed_count == 1
    assert [c.method for c in e.port.write_calls] == ["cancel_order"]
    assert e.value("grinder_reconcile_action_executed_total", action="cancel_all") == 1
    assert e.value("grinder_reconcile_action_planned_total", action="cancel_all") == 0
    assert e.value("grinder_reconcile_runs_with_remediation_total", action="cancel_all") == 1
    assert e.value("grinder_reconcile_last_remediation_ts_ms") == NOW
    assert e.value("grinder_reconcile_budget_calls_used_day") == 1
    assert e.value("grinder_reconcile_budget_calls_remaining_day") == 99
    assert e.value("grinder_reconcile_budget_notional_remaining_day") == 5000
    assert len(events(grinder_caplog, "REMEDIATION_EXECUTED")) == 1
    recs = e.audit_records()
    assert {r["mode"] for r in recs} == {"live"}
    assert [r["status"] for r in recs if r["event_type"] == "REMEDIATE_RESULT"] == ["EXECUTED"]

    # The next run sees the order gone: the incident clears, nothing is cancelled twice.
    e.clock.set(NOW + 120_000)
    e.snapshot()
    report2 = await e.runner.run_once()
    assert report2.mismatches == []
    assert len(e.port.write_calls) == 1
    assert len(events(grinder_caplog, "RECONCILE_MISMATCH_CLEARED")) == 1


async def test_live_run_blocked_by_missing_env_var_counts_blocked_reason(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=False)
    e.env.clear()
    e.unexpected_order()
    await e.runner.run_once()
    assert e.port.write_calls == []
    assert e.value("grinder_reconcile_action_blocked_total", reason="env_var_missing") == 1
    result = next(r for r in e.audit_records() if r["event_type"] == "REMEDIATE_RESULT")
    assert (result["status"], result["block_reason"]) == ("BLOCKED", "env_var_missing")


async def test_dry_run_unexpected_position_plans_exactly_one_flatten(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=True, action=RemediationAction.FLATTEN)
    e.unexpected_position("0.01")
    report = await e.runner.run_once()
    assert report.planned_count == 1
    assert e.port.write_calls == []
    assert e.value("grinder_reconcile_action_planned_total", action="flatten") == 1
    assert e.value("grinder_reconcile_action_planned_total", action="cancel_all") == 0
    assert e.value("grinder_reconcile_mismatch_total", type="POSITION_NONZERO_UNEXPECTED") == 1
    attempt = next(r for r in e.audit_records() if r["event_type"] == "REMEDIATE_ATTEMPT")
    assert (attempt["action"], attempt["mode"]) == ("flatten", "dry_run")


async def test_passive_mode_reports_mismatch_but_attempts_nothing(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=True, action=RemediationAction.NONE)
    e.unexpected_order()
    await e.runner.run_once()
    assert e.value("grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED") == 1
    assert e.value("grinder_reconcile_action_planned_total", action="cancel_all") == 0
    assert e.port.write_calls == []


async def test_audit_write_failure_never_stops_reconciliation(tmp_path: Path) -> None:
    blocker = tmp_path / "audit"
    blocker.write_text("x")
    e = E2E(tmp_path, dry_run=True, audit_path=blocker / "reconcile.jsonl")
    e.unexpected_order()
    report = await e.runner.run_once()
    assert report.planned_count == 1
    assert e.value("grinder_reconcile_runs_total") == 1
    assert e.value("grinder_reconcile_audit_write_errors_total") == 3
    assert e.audit.errors == 3


async def test_ha_is_leader_gauge_follows_the_executors_leadership(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=False)
    e.unexpected_order()
    await e.runner.run_once()
    assert e.value("grinder_ha_is_leader") == 1
    assert e.value("grinder_reconcile_action_executed_total", action="cancel_all") == 1

    e.leader = False
    e.clock.set(NOW + 120_000)
    e.unexpected_order("grinder_d_BTCUSDT_1_1704067200_2")
    await e.runner.run_once()
    assert e.value("grinder_ha_is_leader") == 0
    assert e.value("grinder_reconcile_action_blocked_total", reason="not_leader") == 1
    assert len(e.port.write_calls) == 1


async def test_snapshot_age_gauge_is_set_from_the_observed_snapshots(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=True)
    e.unexpected_order()  # orders snapshot sent 1 s ago, positions 11 s ago
    await e.runner.run_once()
    assert e.value("grinder_reconcile_last_snapshot_age_seconds") == 11


async def test_snapshot_age_reads_infinite_until_the_first_snapshot(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=True)
    assert e.value("grinder_reconcile_last_snapshot_age_seconds") == math.inf
    await e.runner.run_once()  # a run before any snapshot
    assert e.value("grinder_reconcile_last_snapshot_age_seconds") == math.inf
    e.snapshot()
    await e.runner.run_once()
    assert e.value("grinder_reconcile_last_snapshot_age_seconds") == 11


def test_budget_gauges_show_the_budget_as_soon_as_the_runner_is_built(tmp_path: Path) -> None:
    fresh = E2E(tmp_path, dry_run=True)
    assert fresh.value("grinder_reconcile_budget_calls_remaining_day") == 100
    assert fresh.value("grinder_reconcile_budget_notional_remaining_day") == 5000
    assert fresh.value("grinder_reconcile_budget_calls_used_day") == 0

    store = FileBudgetStore(tmp_path / "budget.json")
    store.save(BudgetState(day=utc_day(NOW), calls_used_day=40, notional_used_day=Decimal(1000)))
    e = E2E(tmp_path, dry_run=True)
    e.executor.budget = BudgetTracker(config=e.config, store=store, clock=e.clock)
    ReconcileRunner(e.engine, e.executor, reporter=e.reporter, clock=e.clock)
    assert e.value("grinder_reconcile_budget_calls_used_day") == 40
    assert e.value("grinder_reconcile_budget_calls_remaining_day") == 60
    assert e.value("grinder_reconcile_budget_notional_used_day") == 1000
    assert e.value("grinder_reconcile_budget_notional_remaining_day") == 4000


def test_the_service_shows_the_budget_file_before_it_starts(tmp_path: Path) -> None:
    store = FileBudgetStore(tmp_path / "budget.json")
    day = utc_day(wall_clock_ms())
    store.save(BudgetState(day=day, calls_used_day=7, notional_used_day=Decimal(250)))
    opts = ServiceOptions(venue="sim", metrics_port=0, env=RuntimeEnv.from_env({}))
    service = ReconcileService(
        opts,
        credentials=credentials_for("sim"),
        budget=BudgetTracker(config=opts.reconcile, store=store),
        audit=None,
        control_socket=tmp_path / "control.sock",
        env={},
    )
    assert value(service.metrics, "grinder_reconcile_budget_calls_remaining_day") == 93
    assert value(service.metrics, "grinder_reconcile_budget_notional_remaining_day") == 4750
    assert value(service.metrics, "grinder_reconcile_last_snapshot_age_seconds") == math.inf


def test_metrics_summary_file_stays_json_before_the_first_snapshot(tmp_path: Path) -> None:
    m = ReconcileMetrics(CollectorRegistry())
    path = tmp_path / "metrics_summary.json"
    write_metrics_summary(path, m.registry, {})
    summary = _strict_loads(path.read_text(encoding="utf-8"))
    assert summary["metrics"]["grinder_reconcile_last_snapshot_age_seconds"] == "+Inf"
    assert summary["metrics"]["grinder_reconcile_runs_total"] == 0


async def test_dry_run_plan_once_per_incident_then_live_executes_it(tmp_path: Path) -> None:
    e = E2E(tmp_path, dry_run=True)
    e.config.cooldown_seconds = 0
    e.unexpected_order()
    e.snapshot()
    first = await e.runner.run_once()
    e.clock.set(NOW + 1_000)
    second = await e.runner.run_once()
    assert [r.status for r in first.results] == [ResultStatus.PLANNED]
    assert second.results == []
    assert [reason for _, reason in second.skipped] == [SkipReason.ALREADY_PLANNED]
    # Rolled forward to live: the standing mismatch is acted on at once.
    e.config.dry_run = False
    e.executor.armed = True
    e.clock.set(NOW + 2_000)
    third = await e.runner.run_once()
    assert [r.status for r in third.results] == [ResultStatus.EXECUTED]
    assert [c.method for c in e.port.write_calls] == ["cancel_order"]


# --- standing outcomes: every run counted, each change reported -----------------------------


def _results(e: E2E) -> list[dict[str, Any]]:
    return [r for r in e.audit_records() if r["event_type"] == "REMEDIATE_RESULT"]


async def test_a_standing_block_names_every_gate_once_and_each_change_again(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=False)
    e.executor.symbol_whitelist = ["ETHUSDT"]
    e.unexpected_order()
    for n in range(4):
        e.clock.set(NOW + n * 1_000)
        await e.runner.run_once()
    gauge = "grinder_reconcile_action_blocked_candidates"
    assert e.value("grinder_reconcile_action_blocked_total", reason="symbol_not_in_whitelist") == 4
    assert e.value(gauge, reason="symbol_not_in_whitelist") == 1
    (line,) = events(grinder_caplog, "REMEDIATION_BLOCKED")
    assert line.endswith(" reason=symbol_not_in_whitelist blocked_by=symbol_not_in_whitelist")
    assert [r["event_type"] for r in e.audit_records()][:3] == [
        "REMEDIATE_ATTEMPT",
        "REMEDIATE_RESULT",
        "RECONCILE_RUN",
    ]
    runs = [r for r in e.audit_records() if r["event_type"] == "RECONCILE_RUN"]
    assert [r["repeated_results"] for r in runs] == [0, 1, 1, 1]
    assert runs[-1]["blocked_by"] == {"symbol_not_in_whitelist": 1}
    assert runs[-1]["block_reasons"] == {"symbol_not_in_whitelist": 1}

    # Disarmed: gate 4 fails before gate 7; the counter moves to the first, the line names both.
    e.executor.armed = False
    for n in range(4, 6):
        e.clock.set(NOW + n * 1_000)
        await e.runner.run_once()
    assert e.value("grinder_reconcile_action_blocked_total", reason="not_armed") == 2
    assert e.value(gauge, reason="not_armed") == 1
    assert e.value(gauge, reason="symbol_not_in_whitelist") == 1
    _, changed = events(grinder_caplog, "REMEDIATION_BLOCKED")
    assert " reason=not_armed blocked_by=not_armed,symbol_not_in_whitelist " in changed
    assert changed.endswith(" repeated_before=3")
    assert [r["blocked_by"] for r in _results(e)] == [
        ["symbol_not_in_whitelist"],
        ["not_armed", "symbol_not_in_whitelist"],
    ]
    assert _results(e)[1]["repeated_before"] == 3
    attempts = [r for r in e.audit_records() if r["event_type"] == "REMEDIATE_ATTEMPT"]
    assert len(attempts) == 2

    # The order goes: the incident clears, nothing stands blocked; when it comes back it is new.
    del e.port.open_orders[OURS]
    e.clock.set(NOW + 10_000)
    e.snapshot()
    await e.runner.run_once()
    assert e.value(gauge, reason="not_armed") == 0
    assert e.value(gauge, reason="symbol_not_in_whitelist") == 0
    e.clock.set(NOW + 11_000)
    e.unexpected_order()
    await e.runner.run_once()
    third = events(grinder_caplog, "REMEDIATION_BLOCKED")[2]
    assert "repeated_before" not in third
    assert len(_results(e)) == 3


async def test_a_failure_that_reached_the_exchange_is_logged_in_every_run(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=False)
    e.config.cooldown_seconds = 0
    e.port.fail_always["cancel_order"] = RequestRejected("Order would immediately trigger.")
    e.unexpected_order()
    for n in range(3):
        e.clock.set(NOW + n * 1_000)
        await e.runner.run_once()
    lines = events(grinder_caplog, "REMEDIATION_FAILED")
    assert len(lines) == 3
    assert all(" error_type=RequestRejected " in x and "attempts=rejected" in x for x in lines)
    assert len(_results(e)) == 3
    assert len(e.port.write_calls) == 3


async def test_a_failure_never_sent_is_logged_once_per_error_type(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=False)
    e.config.cooldown_seconds = 0
    e.port.fail_always["cancel_order"] = not_sent(IpBanned("not sent: banned for 100 s more"))
    e.unexpected_order()
    for n in range(3):
        e.clock.set(NOW + n * 1_000)
        await e.runner.run_once()
    e.port.fail_always["cancel_order"] = not_sent(RateLimited("not sent: paused for 30 s"))
    for n in range(3, 5):
        e.clock.set(NOW + n * 1_000)
        await e.runner.run_once()
    failed = "grinder_reconcile_action_failed_total"
    assert e.value(failed, action="cancel_all", reason="port_error") == 5
    banned, paused = events(grinder_caplog, "REMEDIATION_FAILED")
    assert " error_type=IpBanned " in banned
    assert " error_type=RateLimited " in paused
    assert "attempts=withheld repeated_before=2" in paused
    assert [r["error_type"] for r in _results(e)] == ["IpBanned", "RateLimited"]


async def test_dry_run_skips_of_a_standing_mismatch_are_logged_once(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    e = E2E(tmp_path, dry_run=True)
    e.unexpected_order()
    for n in range(4):
        e.clock.set(NOW + n * 10_000)
        e.snapshot()
        await e.runner.run_once()
    assert e.value("grinder_reconcile_action_skipped_total", reason="already_planned") == 3
    assert len(events(grinder_caplog, "REMEDIATION_PLANNED")) == 1
    (skip,) = events(grinder_caplog, "REMEDIATE_SKIP")
    assert "reason=already_planned" in skip


async def test_after_a_restart_a_standing_block_is_logged_once_again(
    tmp_path: Path, grinder_caplog: pytest.LogCaptureFixture
) -> None:
    """What was reported is kept in memory only: a new service (a new Reporter) says it again."""
    e = E2E(tmp_path, dry_run=False)
    e.executor.symbol_whitelist = ["ETHUSDT"]
    e.unexpected_order()
    for n in range(2):
        e.clock.set(NOW + n * 1_000)
        await e.runner.run_once()
    assert len(events(grinder_caplog, "REMEDIATION_BLOCKED")) == 1
    restarted = Reporter(metrics=e.metrics, audit=e.audit)
    e.executor.reporter = restarted
    runner = ReconcileRunner(e.engine, e.executor, reporter=restarted, clock=e.clock)
    for n in range(2, 4):
        e.clock.set(NOW + n * 1_000)
        await runner.run_once()
    assert len(events(grinder_caplog, "REMEDIATION_BLOCKED")) == 2
    assert len(_results(e)) == 2
