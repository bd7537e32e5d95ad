"""What the command line and the environment say to the service, each value checked: flag
over variable (resolved by click, ``grinder.cli.service_params``). ``ServiceParams`` holds
what every command that reads the service's settings shares, ``RunParams`` the flags only
the running service has; ``grinder.service.options.resolve`` adds the config file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from grinder.config_sources import RuntimeEnv, env_float, env_path
from grinder.reconcile.config import ConfigError, seconds_problem
from grinder.redaction import masked_repr
from grinder.service.defaults import DEFAULT_ARTIFACT_TTL_DAYS, Venue


@dataclass(frozen=True)
class ArtifactsEnv:
    """Where a run's artifacts go (``GRINDER_ARTIFACTS_DIR``; None: nowhere) and how many
    days they are kept (``GRINDER_ARTIFACT_TTL_DAYS``), read strictly."""

    artifacts_dir: Path | None
    ttl_days: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ArtifactsEnv:
        return cls(
            artifacts_dir=env_path(env, "GRINDER_ARTIFACTS_DIR", None),
            ttl_days=env_float(env, "GRINDER_ARTIFACT_TTL_DAYS", DEFAULT_ARTIFACT_TTL_DAYS),
        )


@dataclass(frozen=True)
class ServiceParams:
    """What the command line and the environment say, each value checked, flag over
    variable (resolved by click: ``grinder.cli.service_params``); ``resolve`` adds the
    config file."""

    venue: Venue
    venue_url: str | None
    config: Path | None
    expected_db: Path | None
    ledger_db: Path | None
    redis_url: str | None
    instance_id: str | None
    redis_namespace: str | None
    runtime: RuntimeEnv
    """The variables without a flag: the gates, the audit and the budget."""
    artifacts: ArtifactsEnv
    given: Mapping[str, str]
    """Each parameter that was given: the flag or the variable that gave it (absent: its
    default)."""

    def where(self, name: str, flag: str) -> str:
        """The flag or the variable that gave ``name`` (``flag`` when neither did)."""
        return self.given.get(name, flag)

    def __repr__(self) -> str:
        return masked_repr(self)


@dataclass(frozen=True)
class RunParams:
    """The flags only the running service has (``grinder reconcile``)."""

    duration: float | None
    metrics_port: int
    metrics_host: str
    log_file: Path | None
    reset_budget_state: bool
    audit_out: Path | None
    metrics_out: Path | None
    create_expected_db: bool
    control_socket: Path | None

    def __post_init__(self) -> None:
        problem = None if self.duration is None else seconds_problem(self.duration)
        if problem is not None:
            raise ConfigError(f"--duration: {problem}, got {self.duration}")
