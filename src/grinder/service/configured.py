"""The configured settings: the config file, then the environment the service started with.

One rule, read at start (``options.resolve``) and at every reload (``settings.reload_config``):
``RECONCILE_DRY_RUN`` and ``RECONCILE_ALLOW_ACTIVE`` override ``[reconcile]``, ``ARMED``
overrides ``[service] armed``, and gate 5 (``ALLOW_MAINNET_TRADE``) is the environment
**at start** only: a reload re-reads the file, never the environment (the running
service cannot see the operator's shell), so ``export ALLOW_MAINNET_TRADE=1`` after the
start changes nothing -- ``grinder control allow-mainnet`` does. Each value comes with
where it comes from (``grinder.operator.merge.Source``). The operator's words go on top
(``grinder.operator.merge.effective``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from grinder.config_sources import RuntimeEnv
from grinder.operator.merge import Source, Sourced, configured_value
from grinder.operator.state import ALLOW_MAINNET_FIELD, ARMED
from grinder.reconcile.config import ReconcileConfig

Origin = tuple[Source, str]
ENV_AT_START = "(environment at start)"


@dataclass(frozen=True)
class Configured:
    """What the file and the environment say, and where each setting comes from."""

    reconcile: ReconcileConfig
    armed: bool
    allow_mainnet: bool
    origins: Mapping[str, Origin] = field(default_factory=dict)
    """A setting absent here is a default."""


def configured(
    reconcile: ReconcileConfig,
    file_armed: bool | None,
    env: RuntimeEnv,
    config_path: Path | None,
) -> Configured:
    """``reconcile`` (the file's ``[reconcile]``, changed here), ``[service] armed`` (None:
    not in the file) and the environment at start, combined."""
    where = f"{config_path} [reconcile]" if config_path is not None else ""
    origins: dict[str, Origin] = dict.fromkeys(
        sorted(reconcile.model_fields_set), (Source.FILE, where)
    )
    raw = env.raw
    if raw.get("RECONCILE_DRY_RUN") is not None:
        reconcile.dry_run = env.dry_run
        origins["dry_run"] = (Source.ENV, "RECONCILE_DRY_RUN")
    if raw.get("RECONCILE_ALLOW_ACTIVE") is not None:
        reconcile.allow_active_remediation = env.allow_active
        origins["allow_active_remediation"] = (Source.ENV, "RECONCILE_ALLOW_ACTIVE")
    armed = False
    if raw.get("ARMED") is not None:
        armed = env.armed
        origins[ARMED] = (Source.ENV, "ARMED")
    elif file_armed is not None:
        armed = file_armed
        origins[ARMED] = (Source.FILE, f"{config_path} [service]")
    if raw.get("ALLOW_MAINNET_TRADE") is not None:
        origins[ALLOW_MAINNET_FIELD] = (Source.ENV, f"ALLOW_MAINNET_TRADE {ENV_AT_START}")
    return Configured(reconcile, armed, env.allow_mainnet_trade, origins)


def settings_of(
    reconcile: ReconcileConfig, armed: bool, allow_mainnet: bool, origins: Mapping[str, Origin]
) -> dict[str, Sourced]:
    """Every setting's configured value with its origin (a default when none is known)."""
    values = {name: getattr(reconcile, name) for name in ReconcileConfig.model_fields}
    values[ARMED] = armed
    values[ALLOW_MAINNET_FIELD] = allow_mainnet
    return {
        name: configured_value(value, *origins.get(name, (Source.DEFAULT, "")))
        for name, value in values.items()
    }
