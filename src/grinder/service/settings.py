"""The settings the service runs with: exported, changed at run time, re-read from the file.

The settings in force are exported as metrics (``_observe_settings``: at start,
after every run and after every change). A change -- a control command
(``/set``, ``/arm``, ``/mainnet``), a reload of the config file (``/reload`` or
SIGHUP), an HA step-down -- is logged and audited as ``CONTROL_CHANGE`` and
counted by source. On a reload, the environment gates still win over the file.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from grinder.clock import Clock
from grinder.deadman.config import DeadmanConfig
from grinder.ha.config import HaConfig
from grinder.reconcile.audit import AuditWriter
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.reconcile.logs import log_event
from grinder.reconcile.remediation import RemediationExecutor
from grinder.service.control import ALLOW_MAINNET, Controls
from grinder.service.deadman import DeadmanSwitch
from grinder.service.metrics import ServiceMetrics
from grinder.service.options import ServiceConfig, ServiceOptions, load_config_file

log = logging.getLogger("grinder.service")


class ServiceSettings:
    """The settings part of ``ReconcileService`` (which sets every attribute below)."""

    opts: ServiceOptions
    config: ReconcileConfig
    clock: Clock
    audit: AuditWriter | None
    gate_env: dict[str, str]
    controls: Controls | None
    smetrics: ServiceMetrics
    deadman: DeadmanSwitch | None

    # Defined by ``ReconcileService``; declared for the type checker only, since a definition
    # here would shadow it.
    if TYPE_CHECKING:

        def _executor(self) -> RemediationExecutor: ...

    def _observe_settings(self) -> None:
        executor = self._executor()
        self.smetrics.observe_settings(
            self.config,
            armed=executor.armed,
            allow_mainnet=self.gate_env.get(ALLOW_MAINNET) == "1",
            whitelist=len(executor.symbol_whitelist),
        )

    def _on_change(self, source: str, field: str, old: Any, new: Any) -> None:
        self.smetrics.control_changes.labels(source=source).inc()
        log_event(
            log, "CONTROL_CHANGE", logging.WARNING, source=source, field=field, old=old, new=new
        )
        if self.audit is not None:
            self.audit.write(
                "CONTROL_CHANGE",
                {
                    "ts_ms": self.clock(),
                    "run_id": None,
                    "mode": self._executor().mode,
                    "action": self.config.action.value,
                    "source": source,
                    "field": field,
                    "old": str(getattr(old, "value", old)),
                    "new": str(getattr(new, "value", new)),
                },
            )
        self._observe_settings()

    def _set_armed(self, armed: bool) -> None:
        self._executor().armed = armed

    def _reload_deadman(
        self, fresh: DeadmanConfig, source: str, not_applied: list[str]
    ) -> list[dict[str, Any]]:
        """``[deadman] enabled`` takes effect now (when the switch runs: its symbols were
        listed at start); every other field is read at start."""
        start = self.opts.deadman
        switch = self.deadman
        not_applied += [
            f"deadman.{name}"
            for name in DeadmanConfig.model_fields
            if getattr(fresh, name) != getattr(start, name)
            and (name != "enabled" or switch is None)
        ]
        if switch is None or fresh.enabled == switch.enabled:
            return []
        old = switch.enabled
        switch.set_enabled(fresh.enabled)
        self._on_change(source, "deadman.enabled", old, fresh.enabled)
        return [{"field": "deadman.enabled", "old": old, "new": fresh.enabled}]

    def reload_config(self, source: str) -> dict[str, Any]:
        """Re-read the config file and apply what changed (environment gates still win).

        A file that cannot be read or breaks any rule (the same checks as at start) is a
        ``ConfigError`` and changes nothing. ``[reconcile]`` and ``[service] armed`` take
        effect now, together. The rest of
        ``[service]`` and ``[ha]`` is read at start: a change there is logged
        (``CONFIG_RELOAD_NOT_APPLIED``) and listed as ``not_applied``, never
        silently dropped.
        """
        if self.opts.config_path is None or self.controls is None:
            raise ConfigError("no --config file to reload")
        fresh = load_config_file(self.opts.config_path)
        raw = self.opts.env.raw
        if raw.get("RECONCILE_DRY_RUN") is not None:
            fresh.reconcile.dry_run = self.opts.env.dry_run
        if raw.get("RECONCILE_ALLOW_ACTIVE") is not None:
            fresh.reconcile.allow_active_remediation = self.opts.env.allow_active
        changed = {
            name: getattr(fresh.reconcile, name)
            for name in ReconcileConfig.model_fields
            if getattr(fresh.reconcile, name) != getattr(self.config, name)
        }
        # All together or none: the file was checked whole, and so is what it makes here.
        changes = self.controls.set_fields(changed, source=source) if changed else []
        armed = self.opts.env.armed if raw.get("ARMED") is not None else fresh.service.armed
        if armed != self._executor().armed:
            changes.append(self.controls.arm(armed, source=source))
        not_applied = [
            f"service.{name}"
            for name in ServiceConfig.model_fields
            if name != "armed" and getattr(fresh.service, name) != getattr(self.opts.service, name)
        ] + [
            f"ha.{name}"
            for name in HaConfig.model_fields
            if getattr(fresh.ha, name) != getattr(self.opts.file_ha, name)
        ]
        changes += self._reload_deadman(fresh.deadman, source, not_applied)
        if not_applied:
            log_event(
                log,
                "CONFIG_RELOAD_NOT_APPLIED",
                logging.WARNING,
                source=source,
                fields=",".join(not_applied),
                why="read_at_start_restart_to_apply",
            )
        log_event(log, "CONFIG_RELOADED", source=source, changes=len(changes))
        return {
            "reloaded": str(self.opts.config_path),
            "changes": changes,
            "not_applied": not_applied,
        }
