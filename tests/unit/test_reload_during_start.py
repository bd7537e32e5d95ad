"""A reload asked for while the service starts (a SIGHUP during a slow start) is made once
the settings are in force: never lost, never answered with "no --config file"."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from grinder.cli.reconcile import service_options
from grinder.clock import ManualClock
from grinder.operator.stores import MemoryOperatorStore
from grinder.reconcile.config import ConfigError
from grinder.service.metrics import ServiceMetrics
from grinder.service.settings import ServiceSettings

TABLE = "[reconcile]\nmax_calls_per_day = {calls}\n"


def starting(path: Path | None) -> ServiceSettings:
    """The settings of a service whose start has applied the operator state but not yet
    exported the settings (``open_running`` before ``observe_settings``)."""
    opts = service_options([] if path is None else ["--config", str(path)], {})
    settings = ServiceSettings(
        opts,
        clock=ManualClock(1_704_110_400_000),
        audit=None,
        service_metrics=ServiceMetrics(CollectorRegistry()),
        mainnet_at_start=False,
        operator_store=MemoryOperatorStore(),
        instance="test",
        operator_mirror=None,
    )
    settings.operator.start(settings.configured_settings())
    return settings


def test_a_reload_during_the_start_is_made_once_the_settings_are_in_force(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grinder")
    path = tmp_path / "grinder.toml"
    path.write_text(TABLE.format(calls=5))
    settings = starting(path)
    path.write_text(TABLE.format(calls=3))  # the operator tightens the limit, then SIGHUP
    reply = settings.reload_config("sighup")
    assert reply == {"deferred": str(path)}
    assert "CONFIG_RELOAD_DEFERRED source=sighup" in caplog.text
    assert settings.config.max_calls_per_day == 5  # not yet: nothing is in force
    settings.observe_settings()  # the start exports the settings
    assert settings.config.max_calls_per_day == 3
    assert "CONFIG_RELOADED source=sighup" in caplog.text
    caplog.clear()
    settings.observe_settings()  # made once
    assert "CONFIG_RELOADED" not in caplog.text


def test_a_file_broken_during_the_start_changes_nothing_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "grinder.toml"
    path.write_text(TABLE.format(calls=5))
    settings = starting(path)
    path.write_text(TABLE.format(calls="-1"))
    settings.reload_config("sighup")
    settings.observe_settings()
    assert settings.config.max_calls_per_day == 5
    failed = [r.getMessage() for r in caplog.records if "CONFIG_RELOAD_FAILED" in r.getMessage()]
    assert len(failed) == 1
    assert "max_calls_per_day" in failed[0]


def test_without_a_config_file_a_reload_is_refused_at_once(tmp_path: Path) -> None:
    settings = starting(None)
    with pytest.raises(ConfigError, match="no --config file to reload"):
        settings.reload_config("sighup")
    settings.observe_settings()
    with pytest.raises(ConfigError, match="no --config file to reload"):
        settings.reload_config("sighup")
