"""The control socket's directory and takeover rules, and value parsing."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from grinder.reconcile.config import ConfigError, ReconcileConfig, RemediationAction
from grinder.service.control import build_control_app, parse_value, prepare_socket_dir
from tests.support.controls import make_controls


def test_a_live_socket_of_another_service_is_never_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "ctl" / "control.sock"
    path.parent.mkdir(mode=0o700)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(ConfigError, match="another service is listening"):
            prepare_socket_dir(path)
        assert path.exists()
    finally:
        server.close()


def test_a_stale_socket_is_replaced_and_the_directory_made_private(tmp_path: Path) -> None:
    path = tmp_path / "ctl" / "control.sock"
    path.parent.mkdir(mode=0o755)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # bound, never listening: what a killed service leaves behind
    prepare_socket_dir(path)
    assert not path.exists()
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_regular_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        prepare_socket_dir(path)


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("action", "none", RemediationAction.NONE),
        ("dry_run", "true", True),
        ("dry_run", "0", False),
        ("max_orders_per_action", "3", 3),
        ("symbol_whitelist", "BTCUSDT, ETHUSDT", ["BTCUSDT", "ETHUSDT"]),
    ],
)
def test_control_values_are_coerced_by_field_type(field: str, text: str, value: object) -> None:
    config = ReconcileConfig()
    setattr(config, field, parse_value(config, field, text))
    assert getattr(config, field) == value


@pytest.mark.parametrize(
    ("field", "text"), [("dry_run", "yes"), ("max_orders_per_action", "many"), ("nope", "1")]
)
def test_bad_control_values_are_refused(field: str, text: str) -> None:
    with pytest.raises(ConfigError):
        parse_value(ReconcileConfig(), field, text)


async def test_a_set_refused_by_a_rule_is_an_error_reply_and_changes_nothing() -> None:
    """Over HTTP, as ``grinder control set`` sends it: a value that breaks a rule of the whole
    configuration, or a body whose number has 5,000 digits, is a 400 with one line."""
    config = ReconcileConfig()
    changes: list[tuple[str, str, Any, Any]] = []
    controls = make_controls(config, changes)
    async with TestClient(TestServer(build_control_app(controls))) as client:
        refused = await client.post(
            "/set", json={"field": "client_order_id_prefix", "value": "autoclose-"}
        )
        assert refused.status == 400
        error = (await refused.json())["error"]
        assert error.startswith("client_order_id_prefix: 'autoclose-' overlaps")
        huge = await client.post(
            "/set",
            data='{"field": "max_calls_per_day", "value": ' + "9" * 5000 + "}",
            headers={"Content-Type": "application/json"},
        )
        assert huge.status == 400
        assert (await huge.json())["error"] == "request body is not JSON"
        ok = await client.post("/set", json={"field": "action", "value": "cancel_all"})
        assert ok.status == 200
    assert config.client_order_id_prefix == "grinder_"
    assert config.max_calls_per_day == 100
    assert config.action is RemediationAction.CANCEL_ALL
    assert [c[1] for c in changes] == ["action"]


def test_an_optional_setting_is_set_and_unset_by_name() -> None:
    cfg = ReconcileConfig()
    cfg.flatten_max_slippage_bps = parse_value(cfg, "flatten_max_slippage_bps", "20")
    assert cfg.flatten_max_slippage_bps == Decimal("20")
    cfg.flatten_max_slippage_bps = parse_value(cfg, "flatten_max_slippage_bps", "none")
    assert cfg.flatten_max_slippage_bps is None
    with pytest.raises(ValidationError):
        cfg.flatten_max_slippage_bps = parse_value(cfg, "flatten_max_slippage_bps", "5000")
