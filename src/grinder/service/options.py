"""Service settings: the command line and the environment (flag > variable, resolved by
click in ``grinder.cli.service_params`` into ``ServiceParams`` and ``RunParams``), then the
config file, then the defaults -- merged here, in ``resolve``, into a frozen
``ServiceOptions``.

The config file is TOML with up to four tables: ``[reconcile]`` (every field of
``ReconcileConfig``), ``[service]`` (``ServiceConfig`` below), ``[ha]``
(``grinder.ha.config.HaConfig``: lease timings, Redis timeout, key namespace) and
``[deadman]`` (``grinder.deadman.config.DeadmanConfig``: the exchange's countdown).
The runbook's environment gates (``RECONCILE_DRY_RUN``, ``RECONCILE_ALLOW_ACTIVE``,
``ARMED``) override the file (``grinder.service.configured``); ``ALLOW_MAINNET_TRADE`` is
read from the environment at start only.

HA is on when a Redis URL is given (``--redis-url`` / ``GRINDER_REDIS_URL``);
``--instance-id`` / ``GRINDER_INSTANCE_ID`` (default ``<hostname>-<pid>``) names
this instance, ``--redis-namespace`` / ``GRINDER_REDIS_NAMESPACE`` overrides
``[ha] namespace``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from grinder.config_sources import RuntimeEnv
from grinder.deadman.config import DeadmanConfig
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import DEFAULT_WEIGHT_LIMIT
from grinder.ha.config import HaConfig, HaSettings, default_instance_id
from grinder.ha.connection import check_namespace, check_url
from grinder.reconcile.config import (
    MAX_SECONDS,
    CheckedModel,
    ConfigError,
    ReconcileConfig,
    validation_message,
)
from grinder.redaction import masked_repr
from grinder.service.configured import Origin, configured
from grinder.service.defaults import (
    DEFAULT_ARTIFACT_TTL_DAYS,
    DEFAULT_METRICS_HOST,
    DEFAULT_METRICS_PORT,
    DEFAULT_VENUE,
    Venue,
)
from grinder.service.params import RunParams, ServiceParams

PosFloat = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False, strict=True)]
_M = TypeVar("_M", bound=BaseModel)

SNAPSHOT_WEIGHT_SHARE = 0.25
"""The most of ``DEFAULT_WEIGHT_LIMIT`` (the IP's request weight a minute) the periodic
snapshots may ever spend: the rest is left to the bot and the other clients sharing the IP
(docs/DECISIONS.md D47)."""
MAX_SNAPSHOT_WEIGHT = BinanceFuturesPort.snapshot_weight(None)
"""The costliest snapshot: positions (5) and every symbol's open orders, regular and algo."""


def snapshot_weight_worst_case(
    min_interval_s: float, max_interval_s: float, weight_per_minute: float
) -> float:
    """The most request weight a minute the periodic snapshots can spend with this pacing.

    The interval after a snapshot of weight ``w`` (at most ``MAX_SNAPSHOT_WEIGHT``) is
    ``max(min, min(max, w / weight_per_minute * 60))`` (``ServiceLoop.snapshot_interval_s``):
    a snapshot priced within the wanted interval spends at most ``weight_per_minute`` but
    never more than ``w`` per ``min`` interval; one whose wanted interval is past ``max``
    spends ``w`` per ``max(min, max)``.
    """
    w = MAX_SNAPSHOT_WEIGHT
    floor = w * 60 / min_interval_s
    paced = max(weight_per_minute, w * 60 / max(min_interval_s, max_interval_s))
    return min(floor, paced)


class ServiceConfig(CheckedModel):
    """How the live service schedules its work."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    armed: StrictBool = False
    full_pass_interval_s: PosFloat = 10.0
    """A full detection pass at least this often, whatever the stream says."""
    min_snapshot_interval_s: PosFloat = 30.0
    max_snapshot_interval_s: PosFloat = 110.0
    """Freshness wins over weight past this: runbook 13 wants snapshots < 120 s old."""
    snapshot_weight_per_minute: PosFloat = 18.0
    """Request weight per minute the periodic snapshots may use (Binance allows 2,400)."""
    full_snapshot_interval_s: PosFloat = 900.0
    """How often a snapshot uses the all-symbols form (weight 85) whatever it costs."""
    check_delay_ms: Annotated[int, Field(ge=0, le=5000, strict=True)] = 50
    """Slack after a grace period ends before the scheduled check runs."""
    triage_retry_ms: Annotated[int, Field(ge=100, le=60_000, strict=True)] = 250
    """After a missing order's lookup says "not found", look again this soon (one
    query each time) instead of waiting for the next full pass."""
    stream_keepalive_s: PosFloat = 1800.0
    incident_retention_days: PosFloat = 30.0
    """Cleared incidents are kept this long in the ledger (open ones always)."""
    incident_max_count: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] = 10_000
    """At most this many incidents in the ledger: the oldest cleared ones go first."""
    incident_trades_margin_s: Annotated[
        float, Field(ge=0, le=86_400, allow_inf_nan=False, strict=True)
    ] = 600.0
    """A position incident's trades are read from its first sighting minus this (D67)."""
    incident_trades_every_s: Annotated[
        float, Field(ge=1, le=3_600, allow_inf_nan=False, strict=True)
    ] = 10.0
    """At most one trades request per position incident this often (doubling after a
    failure, up to 30 times this)."""
    sim_seed: int = 1
    sim_symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"])

    @model_validator(mode="after")
    def _snapshot_pacing(self) -> ServiceConfig:
        """The periodic snapshots never spend more than their share of the IP's weight."""
        worst = snapshot_weight_worst_case(
            self.min_snapshot_interval_s,
            self.max_snapshot_interval_s,
            self.snapshot_weight_per_minute,
        )
        allowed = DEFAULT_WEIGHT_LIMIT * SNAPSHOT_WEIGHT_SHARE
        if worst > allowed:
            need_s = MAX_SNAPSHOT_WEIGHT * 60 / allowed
            raise ValueError(
                f"min_snapshot_interval_s: {self.min_snapshot_interval_s:g} s with "
                f"snapshot_weight_per_minute = {self.snapshot_weight_per_minute:g} and "
                f"max_snapshot_interval_s = {self.max_snapshot_interval_s:g} lets the snapshots "
                f"spend up to {worst:.0f} request weight a minute, over {allowed:.0f} "
                f"({SNAPSHOT_WEIGHT_SHARE:.0%} of the IP's {DEFAULT_WEIGHT_LIMIT}): raise "
                f"min_snapshot_interval_s to at least {need_s:g}, or keep "
                f"snapshot_weight_per_minute <= {allowed:.0f} and max_snapshot_interval_s "
                f">= {need_s:g}"
            )
        return self


@dataclass(frozen=True)
class FileConfig:
    reconcile: ReconcileConfig
    service: ServiceConfig
    ha: HaConfig = field(default_factory=HaConfig)
    deadman: DeadmanConfig = field(default_factory=DeadmanConfig)


TABLES = ("reconcile", "service", "ha", "deadman")


def load_config_file(path: Path | None) -> FileConfig:
    """The config file's tables (defaults when ``path`` is None)."""
    if path is None:
        return FileConfig(ReconcileConfig(), ServiceConfig())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {unknown}; expected [reconcile], [service], [ha], [deadman]"
        )
    tables = {name: raw.get(name, {}) for name in TABLES}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    reconcile = ReconcileConfig.from_mapping(tables["reconcile"], source=f"{path} [reconcile]")
    service = _validate(ServiceConfig, tables["service"], f"{path} [service]")
    ha_config = _validate(HaConfig, tables["ha"], f"{path} [ha]")
    deadman = _validate(DeadmanConfig, tables["deadman"], f"{path} [deadman]")
    problem = deadman.check_with_service(service.max_snapshot_interval_s)
    if problem is not None:
        raise ConfigError(f"{path} [deadman]: {problem}")
    return FileConfig(reconcile, service, ha_config, deadman)


def file_armed(file_cfg: FileConfig) -> bool | None:
    """``[service] armed`` when the file sets it, else None."""
    service = file_cfg.service
    return service.armed if "armed" in service.model_fields_set else None


def _validate(model: type[_M], data: dict[str, Any], where: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {validation_message(exc)}") from None


@dataclass(frozen=True)
class ServiceOptions:
    """Everything the service was asked to do, resolved and validated."""

    venue: Venue = DEFAULT_VENUE
    venue_url: str | None = None
    duration_s: float | None = None
    config_path: Path | None = None
    metrics_host: str = DEFAULT_METRICS_HOST
    metrics_port: int = DEFAULT_METRICS_PORT
    log_file: Path | None = None
    reset_budget_state: bool = False
    audit_out: Path | None = None
    metrics_out: Path | None = None
    expected_db: Path | None = None
    expected_db_where: str = "--expected-db"
    """Where ``expected_db`` came from (the flag or ``GRINDER_EXPECTED_DB``), for messages."""
    create_expected_db: bool = False
    """``--create-expected-db``: a missing ``expected_db`` is created (empty, no bot heartbeat)
    instead of refused."""
    control_socket: Path | None = None
    ledger_db: Path | None = None
    """The incident ledger's SQLite file (a service alone); None: in memory, or in Redis
    under HA."""
    ledger_db_where: str = "--ledger-db"
    artifacts_dir: Path | None = None
    artifact_ttl_days: float = DEFAULT_ARTIFACT_TTL_DAYS
    env: RuntimeEnv = field(default_factory=lambda: RuntimeEnv.from_env({}))
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    armed: bool = False
    ha: HaSettings | None = None
    """HA on Redis; None runs alone, exactly as without HA."""
    file_ha: HaConfig = field(default_factory=HaConfig)
    """The config file's ``[ha]`` table as read at start (a reload compares against it)."""
    deadman: DeadmanConfig = field(default_factory=DeadmanConfig)
    """The dead-man switch (``[deadman]``); a reload changes only ``enabled``."""
    origins: Mapping[str, Origin] = field(default_factory=dict)
    """Where each configured setting comes from (``grinder.service.configured``)."""

    def __repr__(self) -> str:
        return masked_repr(self)

    def audit_path(self, run_dir_audit: Path | None) -> Path | None:
        """Explicit ``--audit-out`` wins; then the run-dir; then the audit env vars."""
        if self.audit_out is not None:
            return self.audit_out
        if run_dir_audit is not None:
            return run_dir_audit
        if self.env.audit_enabled:
            return self.env.audit_path
        return None


def resolve(params: ServiceParams, run: RunParams | None = None) -> ServiceOptions:
    """The command line and the environment (``params``; ``run``: the service's own flags,
    None for a command that does not run it), over the config file, over the defaults."""
    file_cfg = load_config_file(params.config)
    # Environment gates override the file when they are set.
    settings = configured(file_cfg.reconcile, file_armed(file_cfg), params.runtime, params.config)
    ha = _ha_settings(params, file_cfg.ha)
    _check_deadman(
        file_cfg.deadman, params.config, params.venue, ha, params.runtime.allow_mainnet_trade
    )
    ledger_db_where = params.where("ledger_db", "--ledger-db")
    if params.ledger_db is not None and ha is not None:
        raise ConfigError(
            f"{ledger_db_where}: with HA (a Redis URL) the incident ledger is kept in Redis, "
            "shared by the instances; leave out the ledger file"
        )
    opts = ServiceOptions(
        venue=params.venue,
        venue_url=params.venue_url,
        config_path=params.config,
        expected_db=params.expected_db,
        expected_db_where=params.where("expected_db", "--expected-db"),
        ledger_db=params.ledger_db,
        ledger_db_where=ledger_db_where,
        artifacts_dir=params.artifacts.artifacts_dir,
        artifact_ttl_days=params.artifacts.ttl_days,
        env=params.runtime,
        reconcile=settings.reconcile,
        service=file_cfg.service,
        armed=settings.armed,
        origins=settings.origins,
        ha=ha,
        file_ha=file_cfg.ha,
        deadman=file_cfg.deadman,
    )
    return opts if run is None else _with_run(opts, run)


def _with_run(opts: ServiceOptions, run: RunParams) -> ServiceOptions:
    if run.create_expected_db and opts.expected_db is None:
        raise ConfigError(
            "--create-expected-db: needs --expected-db FILE (or GRINDER_EXPECTED_DB) to create"
        )
    return replace(
        opts,
        duration_s=run.duration,
        metrics_host=run.metrics_host,
        metrics_port=run.metrics_port,
        log_file=run.log_file,
        reset_budget_state=run.reset_budget_state,
        audit_out=run.audit_out,
        metrics_out=run.metrics_out,
        create_expected_db=run.create_expected_db,
        control_socket=run.control_socket,
    )


def _check_deadman(
    deadman: DeadmanConfig,
    path: Path | None,
    venue: Venue,
    ha: HaSettings | None,
    allow_mainnet: bool,
) -> None:
    """The rules of ``[deadman]`` that need the rest of the settings, whenever the switch
    can run (a reload may switch a listed one on: it is checked here, at start)."""
    if not deadman.can_run:
        return
    problem = None if ha is None else deadman.check_with_ha(ha.config.lease_ttl_s)
    if problem is not None:
        raise ConfigError(f"{path} [deadman]: {problem}")
    if venue == "mainnet" and not allow_mainnet:
        raise ConfigError(
            f"{path} [deadman]: on mainnet needs ALLOW_MAINNET_TRADE=1 in the service's "
            "environment (a tripped switch cancels every open order of its symbols)"
        )


def _ha_settings(params: ServiceParams, file_ha: HaConfig) -> HaSettings | None:
    """HA settings when a Redis URL is given, else None."""
    url = params.redis_url
    if not url:
        flags = [params.given.get(n, "") for n in ("instance_id", "redis_namespace")]
        if any(f.startswith("--") for f in flags):
            raise ConfigError("--instance-id/--redis-namespace: need --redis-url (HA on Redis)")
        return None
    namespace = params.redis_namespace
    try:
        check_url(url, where=params.where("redis_url", "--redis-url"))
        if namespace:
            check_namespace(namespace, where=params.where("redis_namespace", "--redis-namespace"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    instance = params.instance_id or default_instance_id()
    if any(c.isspace() for c in instance) or not 0 < len(instance) <= 128:
        iwhere = params.where("instance_id", "--instance-id")
        raise ConfigError(f"{iwhere}: expected 1-128 characters without spaces, got {instance!r}")
    config = file_ha.model_copy(update={"namespace": namespace}) if namespace else file_ha
    return HaSettings(redis_url=url, instance_id=instance, config=config)
