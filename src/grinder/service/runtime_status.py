"""What a running service runs with, as its control socket's ``/status`` shows it (``runtime``).

An operator's tools on the same host (``grinder ceremony check``, above all) judge the
service, never the shell they run in: the paths the service writes and reads (absolute, as
the service resolved them from its own working directory), the gate-relevant environment
the service was started with, and the environment variables that override its config file.
Everything here is fixed when the service starts (``ServiceRuntime.of``) except the venue's
URL, known once it is connected (an in-process simulator's port is chosen then).

Nothing secret leaves: the environment passes ``grinder.redaction.redact`` by name (a
``GRINDER_SIM_API_SECRET`` is ``***REDACTED***``, a password in a URL ``***``), URLs pass
``mask_url``, and the whole reply passes ``redact`` again on its way out
(``service.control``). The credentials themselves (``BINANCE_*``) are not listed at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from grinder.clock import wall_clock_ms
from grinder.redaction import mask_url, redact
from grinder.service.artifacts import RunDir, final_metrics_path
from grinder.service.options import ServiceOptions
from grinder.service.venue import VenueConnection

GATE_ENV_PREFIXES: Final = ("GRINDER_", "RECONCILE_", "BUDGET_", "ALLOW_")
GATE_ENV_NAMES: Final = frozenset({"ARMED"})
"""The environment ``runtime.env`` lists: what steers the gates, the paths and the run."""

ENV_OVERRIDES: Final = (
    ("RECONCILE_DRY_RUN", "dry_run"),
    ("RECONCILE_ALLOW_ACTIVE", "allow_active_remediation"),
    ("ARMED", "armed"),
    ("ALLOW_MAINNET_TRADE", "allow_mainnet_trade"),
)
"""Variables that, when set in the service's environment, win over its config file (at start
and on every reload: ``service.options.resolve``, ``ServiceSettings.reload_config``), and the
setting each decides. ``ALLOW_MAINNET_TRADE`` has no file setting: it is the gate itself."""


def gate_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The gate-relevant variables set in ``env``, sorted, secrets redacted by name."""
    chosen = {
        name: value
        for name, value in sorted(env.items())
        if name in GATE_ENV_NAMES or name.startswith(GATE_ENV_PREFIXES)
    }
    shown: dict[str, str] = redact(chosen, by_name=True)
    return shown


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(path.absolute())


@dataclass(frozen=True)
class ServiceRuntime:
    """The service's runtime facts, fixed at start."""

    started_ts_ms: int
    cwd: str
    paths: Mapping[str, str | None]
    env: Mapping[str, str]
    env_overrides: Mapping[str, str]
    budget_store: str
    """Where the daily budget persists: ``file``, ``redis`` (HA, shared) or ``memory``."""

    @classmethod
    def of(
        cls,
        opts: ServiceOptions,
        env: Mapping[str, str],
        *,
        started_ts_ms: int,
        control_socket: Path | None,
        run_dir: Path | None = None,
        audit_path: Path | None = None,
        metrics_out: Path | None = None,
    ) -> ServiceRuntime:
        """The facts of a service started with ``opts`` in ``env`` (relative paths are made
        absolute against this process's working directory, which is the service's)."""
        budget = opts.env.budget_state_path
        paths = {
            "artifacts_dir": _absolute(opts.artifacts_dir),
            "run_dir": _absolute(run_dir),
            "budget_state_path": _absolute(budget),
            "log_file": _absolute(opts.log_file),
            "audit": _absolute(audit_path),
            "audit_out": _absolute(opts.audit_out),
            "metrics_out": _absolute(metrics_out or opts.metrics_out),
            "config_file": _absolute(opts.config_path),
            "expected_db": _absolute(opts.expected_db),
            "redis_url": mask_url(opts.ha.redis_url) if opts.ha is not None else None,
            "control_socket": _absolute(control_socket),
        }
        overrides = {
            setting: f"{name}={env[name]}" for name, setting in ENV_OVERRIDES if name in env
        }
        store = "redis" if opts.ha is not None else ("file" if budget is not None else "memory")
        return cls(
            started_ts_ms=started_ts_ms,
            cwd=str(Path.cwd()),
            paths=MappingProxyType(paths),
            env=MappingProxyType(gate_environment(env)),
            env_overrides=MappingProxyType(overrides),
            budget_store=store,
        )

    @classmethod
    def for_run(
        cls,
        opts: ServiceOptions,
        env: Mapping[str, str],
        control_socket: Path,
        run_dir: RunDir | None,
        audit_path: Path | None,
    ) -> ServiceRuntime:
        """The facts of a service run from the command line, starting now."""
        return cls.of(
            opts,
            env,
            started_ts_ms=wall_clock_ms(),
            control_socket=control_socket,
            run_dir=run_dir.path if run_dir else None,
            audit_path=audit_path,
            metrics_out=final_metrics_path(opts.metrics_out, run_dir),
        )

    def section(self, venue_url: str | None) -> dict[str, Any]:
        """``/status``'s ``runtime``: these facts and the venue's URL (masked)."""
        return {
            "started_ts_ms": self.started_ts_ms,
            "cwd": self.cwd,
            "venue_url": mask_url(venue_url) if venue_url else None,
            "paths": dict(self.paths),
            "budget_store": self.budget_store,
            "env": dict(self.env),
            "env_overrides": dict(self.env_overrides),
        }


def venue_line(venue: VenueConnection | None) -> str:
    """The service's start-up line naming where its exchange answers; for the bundled
    simulator also where drift and faults are injected (its port is chosen at start)."""
    if venue is None:
        return "venue: not connected"
    url = mask_url(venue.rest.base_url)
    if venue.sim is not None:
        return f"venue: {url} (the bundled simulator: {url}/_sim/ injects drift, docs/SIMULATOR.md)"
    return f"venue: {url}"
