"""What /status's ``runtime`` shows of a service (paths, environment, overrides), and the
small things a newcomer reads first: the control socket's default and every command's help."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import click
import pytest

from grinder.cli.errors import run_command
from grinder.cli.main import cli
from grinder.config_sources import RuntimeEnv
from grinder.ha.config import HaConfig, HaSettings
from grinder.redaction import REDACTED
from grinder.service.control import DEFAULT_SOCKET_TEXT, default_socket_path
from grinder.service.options import ServiceOptions
from grinder.service.runtime_status import ServiceRuntime, gate_environment

REPO = Path(__file__).resolve().parents[2]


def test_the_gate_environment_lists_what_steers_the_service_and_hides_every_secret() -> None:
    env = {
        "ARMED": "1",
        "ALLOW_MAINNET_TRADE": "1",
        "RECONCILE_DRY_RUN": "0",
        "BUDGET_STATE_PATH": "/var/lib/grinder/budget.json",
        "GRINDER_ARTIFACTS_DIR": "/var/lib/grinder/artifacts",
        "GRINDER_REDIS_URL": "redis://:hunter2hunter2@redis.internal:6379/0",
        "GRINDER_SIM_API_SECRET": "sim-secret-value-123",
        "GRINDER_SIM_API_KEY": "sim-key-value-456",
        "BINANCE_API_KEY": "binance-key-789",
        "BINANCE_API_SECRET_FILE": "/run/secrets/binance",
        "HOME": "/home/op",
        "PATH": "/usr/bin",
    }
    shown = gate_environment(env)
    assert shown == {
        "ALLOW_MAINNET_TRADE": "1",
        "ARMED": "1",
        "BUDGET_STATE_PATH": "/var/lib/grinder/budget.json",
        "GRINDER_ARTIFACTS_DIR": "/var/lib/grinder/artifacts",
        "GRINDER_REDIS_URL": "redis://:***@redis.internal:6379/0",
        "GRINDER_SIM_API_KEY": REDACTED,
        "GRINDER_SIM_API_SECRET": REDACTED,
        "RECONCILE_DRY_RUN": "0",
    }
    text = json.dumps(shown)
    for secret in ("hunter2hunter2", "sim-secret-value-123", "sim-key-value-456", "binance"):
        assert secret not in text


def test_the_runtime_has_absolute_paths_the_overrides_and_where_the_budget_persists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"BUDGET_STATE_PATH": "state/budget.json", "ARMED": "1", "RECONCILE_DRY_RUN": "0"}
    opts = ServiceOptions(
        log_file=Path("logs/app.log"),
        config_path=Path("grinder.toml"),
        env=RuntimeEnv.from_env(env),
    )
    runtime = ServiceRuntime.of(
        opts, env, started_ts_ms=1_700_000_000_000, control_socket=Path("run/c.sock")
    )
    section = runtime.section("http://user:pa55word-x@127.0.0.1:8765")
    paths = section["paths"]
    assert paths["budget_state_path"] == str(tmp_path / "state" / "budget.json")
    assert paths["log_file"] == str(tmp_path / "logs" / "app.log")
    assert paths["config_file"] == str(tmp_path / "grinder.toml")
    assert paths["control_socket"] == str(tmp_path / "run" / "c.sock")
    assert paths["run_dir"] is None
    assert paths["artifacts_dir"] is None
    assert paths["redis_url"] is None
    assert section["cwd"] == str(tmp_path)
    assert section["budget_store"] == "file"
    assert section["started_ts_ms"] == 1_700_000_000_000
    assert section["env_overrides"] == {"dry_run": "RECONCILE_DRY_RUN=0", "armed": "ARMED=1"}
    assert section["venue_url"] == "http://user:***@127.0.0.1:8765"
    # Fixed once built.
    with pytest.raises(TypeError):
        runtime.paths["log_file"] = "/elsewhere"  # type: ignore[index]

    ha = ServiceOptions(
        ha=HaSettings(redis_url="redis://:s3cret-pass@h:6379/0", instance_id="a", config=HaConfig())
    )
    shared = ServiceRuntime.of(ha, {}, started_ts_ms=1, control_socket=None).section(None)
    assert shared["budget_store"] == "redis"
    assert shared["paths"]["redis_url"] == "redis://:***@h:6379/0"
    memory = ServiceRuntime.of(ServiceOptions(), {}, started_ts_ms=1, control_socket=None)
    assert memory.section(None)["budget_store"] == "memory"


def test_the_control_socket_default_is_what_the_help_and_the_docs_say() -> None:
    assert default_socket_path({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path(
        "/run/user/7/grinder/control.sock"
    )
    assert default_socket_path({}) == Path(f"/tmp/grinder-{os.getuid()}/control.sock")
    assert DEFAULT_SOCKET_TEXT == (
        "$XDG_RUNTIME_DIR/grinder/control.sock, or /tmp/grinder-$UID/control.sock when "
        "XDG_RUNTIME_DIR is unset"
    )
    for argv in (["reconcile", "--help"], ["control", "status", "--help"]):
        out = " ".join(_help(argv).split())
        assert "/tmp/grinder-$UID/control.sock when XDG_RUNTIME_DIR is unset" in out, argv
    readme = (REPO / "README.md").read_text()
    assert (
        "default `$XDG_RUNTIME_DIR/grinder/control.sock`, or `/tmp/grinder-$UID/control.sock` "
        "when `XDG_RUNTIME_DIR` is unset"
    ) in readme
    for doc in ("13_OPERATOR_CEREMONY.md", "11_RECONCILIATION_TRIAGE.md"):
        text = " ".join((REPO / "docs" / "runbooks" / doc).read_text().split())
        assert "`/tmp/grinder-$UID/control.sock` when `XDG_RUNTIME_DIR` is unset" in text, doc


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_command(cli, argv, prog_name="grinder")
    assert code == 0, argv
    return out.getvalue()


def _commands(group: click.Group, path: list[str]) -> list[tuple[list[str], click.Command]]:
    """Every command under ``group``, through click's own listing (the ``grinder`` group imports
    a subcommand when it is asked for)."""
    ctx = click.Context(group)
    found: list[tuple[list[str], click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _commands(command, [*path, name])
        found.append(([*path, name], command))
    return found


def test_every_command_takes_h_and_every_option_says_what_it_does() -> None:
    commands = _commands(cli, [])
    assert len(commands) > 10
    for path, command in commands:
        assert _help([*path, "-h"]).startswith(f"Usage: grinder {' '.join(path)}")
        silent = [
            p.opts for p in command.params if isinstance(p, click.Option) and not (p.help or "")
        ]
        assert silent == [], path
    out = " ".join(_help(["reconcile", "-h"]).split())
    for flag in ("--log-file FILE Write the event log", "--audit-out FILE Write the JSONL"):
        assert flag in out
    assert "--metrics-out FILE Write the final Prometheus metrics" in out
