"""HA settings: flags > environment > [ha] table; bad values are one clear error (exit 2)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from grinder.cli.reconcile import service_options
from grinder.reconcile.config import ConfigError

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]


def test_without_a_redis_url_the_service_runs_alone() -> None:
    assert service_options([], {}).ha is None


def test_flag_wins_over_environment_and_environment_over_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[ha]\nlease_ttl_s = 3\nnamespace = "fromfile"\n')
    env = {
        "GRINDER_REDIS_URL": "redis://env:6379/0",
        "GRINDER_INSTANCE_ID": "env-id",
        "GRINDER_REDIS_NAMESPACE": "fromenv",
    }
    ha = service_options(["--config", str(cfg)], env).ha
    assert ha is not None
    assert (ha.redis_url, ha.instance_id, ha.namespace) == (
        "redis://env:6379/0",
        "env-id",
        "fromenv",
    )
    assert ha.config.lease_ttl_s == 3
    ha = service_options(
        [
            *("--config", str(cfg)),
            *("--redis-url", "redis://flag:6379/1"),
            *("--instance-id", "flag-id"),
            *("--redis-namespace", "fromflag"),
        ],
        env,
    ).ha
    assert ha is not None
    assert (ha.redis_url, ha.instance_id, ha.namespace) == (
        "redis://flag:6379/1",
        "flag-id",
        "fromflag",
    )
    ha = service_options(["--config", str(cfg), "--redis-url", "redis://h:1/0"], {}).ha
    assert ha is not None
    assert ha.namespace == "fromfile"
    assert ha.instance_id.endswith(f"-{os.getpid()}")  # <hostname>-<pid>


@pytest.mark.parametrize(
    ("flags", "env", "toml", "needle"),
    [
        (["--redis-url", "http://x:1"], {}, "", "--redis-url"),
        ([], {"GRINDER_REDIS_URL": "redis://"}, "", "GRINDER_REDIS_URL"),
        (["--redis-url", "redis://h:1", "--instance-id", "a b"], {}, "", "--instance-id"),
        (["--redis-url", "redis://h:1", "--redis-namespace", "a b"], {}, "", "--redis-namespace"),
        (["--instance-id", "a"], {}, "", "--redis-url"),
        ([], {}, "[ha]\nlease_ttl_s = 1\nrenew_interval_s = 0.9\n", "[ha]"),
        ([], {}, "[ha]\nlease = 1\n", "[ha]"),
        ([], {}, "[ha]\nredis_timeout_s = 5\n", "[ha]"),
        ([], {}, "[nope]\n", "[ha]"),
    ],
)
def test_bad_ha_settings_are_one_clear_error(
    tmp_path: Path, flags: list[str], env: dict[str, str], toml: str, needle: str
) -> None:
    if toml:
        cfg = tmp_path / "g.toml"
        cfg.write_text(toml)
        flags = [*flags, "--config", str(cfg)]
    with pytest.raises(ConfigError) as err:
        service_options(flags, env)
    assert needle in str(err.value)


def test_the_command_line_shows_ha_and_never_the_redis_password(tmp_path: Path, cli: Any) -> None:
    """Redis is not reachable here: the service still starts, detects, and exits cleanly."""
    proc = cli.run(
        "scripts.run_live_reconcile",
        "--metrics-port",
        "0",
        "--duration",
        "1.5",
        "--redis-url",
        "redis://:hunter2@127.0.0.1:1/0",
        "--instance-id",
        "solo",
        env=cli.env(scripts=True, runtime_dir=tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hunter2" not in proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("ha:"))
    assert "redis redis://:***@127.0.0.1:1/0 namespace=grinder instance=solo lease=10s" in line
    assert "expected_state:    redis (shared)" in proc.stdout
    assert "HA_REDIS_DOWN" in proc.stderr or "HA_BUDGET_LOAD_FAILED" in proc.stderr


def test_reset_budget_state_with_ha_resets_the_shared_budget(
    tmp_path: Path, redis_server: Any, cli: Any
) -> None:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    client = redis_server.client()
    client.hset(f"grinder:budget:{day}", mapping={"calls": 7, "units": 0, "updated_ts": 1})
    proc = cli.run(
        "scripts.run_live_reconcile",
        "--metrics-port",
        "0",
        "--duration",
        "1",
        "--reset-budget-state",
        env=cli.env(
            scripts=True,
            runtime_dir=tmp_path,
            GRINDER_REDIS_URL=redis_server.url,
            BUDGET_STATE_PATH=str(tmp_path / "budget.json"),
        ),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"budget_state_reset=1 path={tmp_path / 'budget.json'}" in proc.stdout.splitlines()
    state = client.hgetall(f"grinder:budget:{day}")
    assert state["calls"] == "0"
    assert int(state["reset_ts"]) > 1
    client.close()
