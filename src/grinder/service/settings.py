"""The settings the service runs with: configured, held by the operator's words, applied.

What is in force is the configured value of each setting (config file, then the
environment at start: ``grinder.service.configured``) replaced by the operator's word on
it, if any (``grinder.service.operator``, D57): a reload of the file (``/reload`` or
SIGHUP) changes the configured values, and what a word holds stays as it is -- the reload
says so (``CONFIG_HELD``, ``held`` in its reply, ``status``). The settings in
force are exported as metrics (``_observe_settings``: at start, after every run and after
every change). A change of what is in force is logged and audited as ``CONTROL_CHANGE``
(with who gave the word and why) and counted by source.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from grinder.clock import Clock
from grinder.deadman.config import DeadmanConfig
from grinder.ha.config import HaConfig
from grinder.operator.decide import WordChange
from grinder.operator.merge import Sourced
from grinder.operator.state import ALLOW_MAINNET_FIELD, Stamp
from grinder.operator.stores import FileOperatorStore, OperatorStore
from grinder.reconcile.config import ConfigError, ReconcileConfig, validation_message
from grinder.reporting.audit import AuditWriter
from grinder.reporting.logs import log_event
from grinder.service.configured import configured, settings_of
from grinder.service.deadman import DeadmanSwitch
from grinder.service.live import ALLOW_MAINNET, LiveSettings
from grinder.service.metrics import ServiceMetrics
from grinder.service.operator import OperatorControl, log_word
from grinder.service.options import ServiceConfig, ServiceOptions, file_armed, load_config_file

log = logging.getLogger("grinder.service")


def check_settings(in_force: Mapping[str, Sourced]) -> None:
    """``ConfigError`` unless these settings make a configuration every rule accepts."""
    values = {n: s.value for n, s in in_force.items() if n in ReconcileConfig.model_fields}
    try:
        ReconcileConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc)) from None


class ServiceSettings:
    """The settings in force (``live``) under the operator's words (``operator``): exported,
    changed at run time, reloaded. Built before the start; the running parts it applies to
    follow it once they exist (``follow_armed``: the executor; ``follow_deadman``: the
    dead-man switch, when one runs)."""

    def __init__(
        self,
        opts: ServiceOptions,
        *,
        clock: Clock,
        audit: AuditWriter | None,
        service_metrics: ServiceMetrics,
        mainnet_at_start: bool,
        operator_store: OperatorStore,
        instance: str,
        operator_mirror: FileOperatorStore | None,
    ) -> None:
        self.opts = opts
        self.config: ReconcileConfig = opts.reconcile
        self.clock = clock
        self.audit = audit
        self.service_metrics = service_metrics
        self._mainnet_at_start = mainnet_at_start
        """Gate 5's configured value: ``ALLOW_MAINNET_TRADE=1`` in the environment at start."""
        self.gate_env: dict[str, str] = {ALLOW_MAINNET: "1"} if mainnet_at_start else {}
        """The gate environment the executor reads (gate 5), as the operator's words set it."""
        self._deadman: DeadmanSwitch | None = None
        """The dead-man switch ``[deadman] enabled`` reloads onto (None: none runs)."""
        self._armed_followers: list[Callable[[bool], None]] = []
        self._exported = False
        """Whether the settings are exported yet (from the service's start on)."""
        self._reload_asked: str | None = None
        """Who asked for a reload before the export (a SIGHUP during the start): made then."""
        self.live = LiveSettings(
            self.config,
            armed=opts.armed,
            gate_env=self.gate_env,
            on_change=self.on_change,
            on_armed=self._armed_changed,
        )
        self.operator = OperatorControl(
            operator_store,
            instance=instance,
            clock=clock,
            apply=self.live.apply,
            check=check_settings,
            mirror=operator_mirror,
            on_word=self._on_word,
        )

    def follow_armed(self, follower: Callable[[bool], None]) -> None:
        """``follower(armed)`` at every change of ``armed`` in force (gate 4)."""
        self._armed_followers.append(follower)

    def follow_deadman(self, switch: DeadmanSwitch) -> None:
        """The dead-man switch a reload's ``[deadman] enabled`` applies to."""
        self._deadman = switch

    def _armed_changed(self, armed: bool) -> None:
        for follower in self._armed_followers:
            follower(armed)

    def configured_settings(self) -> dict[str, Sourced]:
        """The settings as the options at start configure them (file, environment)."""
        opts = self.opts
        return settings_of(opts.reconcile, opts.armed, self._mainnet_at_start, opts.origins)

    def observe_settings(self) -> None:
        """Export the settings in force (from the start on: at start, after every run and
        after every change). The first export makes a reload asked for during the start."""
        first, self._exported = not self._exported, True
        self.service_metrics.observe_settings(
            self.config,
            armed=self.live.armed,
            allow_mainnet=self.live.allow_mainnet,
            whitelist=len(self.config.symbol_whitelist),
        )
        asked, self._reload_asked = self._reload_asked, None
        if first and asked is not None:
            try:
                self.reload_config(asked)
            except ConfigError as exc:
                log.error("CONFIG_RELOAD_FAILED error=%s (settings unchanged)", exc)

    def on_change(
        self, source: str, field: str, old: Any, new: Any, stamp: Stamp | None = None
    ) -> None:
        self.service_metrics.control_changes.labels(source=source).inc()
        who = {} if stamp is None else {"by": stamp.by, "reason": stamp.reason or "-"}
        log_event(
            log,
            "CONTROL_CHANGE",
            logging.WARNING,
            source=source,
            field=field,
            old=old,
            new=new,
            **who,
        )
        if self.audit is not None:
            self.audit.write(
                "CONTROL_CHANGE",
                {
                    "ts_ms": self.clock(),
                    "run_id": None,
                    "mode": "dry_run" if self.config.dry_run else "live",
                    "action": self.config.action.value,
                    "source": source,
                    "field": field,
                    "old": str(getattr(old, "value", old)),
                    "new": str(getattr(new, "value", new)),
                    **({} if stamp is None else {"by": stamp.by, "reason": stamp.reason}),
                    **({} if stamp is None else {"at_ms": stamp.at_ms}),
                },
            )
        if self._exported:
            self.observe_settings()

    def _on_word(self, change: WordChange, stamp: Stamp) -> None:
        """A word recorded through this instance: logged (``OPERATOR_WORD``) and audited,
        whatever it changes in force."""
        log_word(change, stamp)
        if self.audit is not None:
            after = change.after
            self.audit.write(
                "OPERATOR_WORD",
                {
                    "ts_ms": self.clock(),
                    "run_id": None,
                    "mode": "dry_run" if self.config.dry_run else "live",
                    "action": self.config.action.value,
                    "kind": change.kind.value,
                    "field": change.field,
                    "value": None if after is None else after.value,
                    **stamp.to_json(),
                },
            )

    # --- reload --------------------------------------------------------------------------

    def _reload_deadman(
        self, fresh: DeadmanConfig, source: str, not_applied: list[str]
    ) -> list[dict[str, Any]]:
        """``[deadman] enabled`` takes effect now (when the switch runs: its symbols were
        listed at start); every other field is read at start."""
        start = self.opts.deadman
        switch = self._deadman
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
        self.on_change(source, "deadman.enabled", old, fresh.enabled)
        return [{"field": "deadman.enabled", "old": old, "new": fresh.enabled}]

    def reload_config(self, source: str) -> dict[str, Any]:
        """Re-read the config file and apply what changed, under the operator's words.

        A file that cannot be read or breaks any rule (the same checks as at start, with the
        operator's words on top) is a ``ConfigError`` and changes nothing. ``[reconcile]``
        and ``[service] armed`` take effect now, together, except where an operator's word
        holds the setting (listed as ``held``). The environment is the one the service
        started with: gate 5's configured value does not change (``allow_mainnet_trade``
        in the reply says what is in force and why). The rest of ``[service]`` and ``[ha]``
        is read at start: a change there is logged (``CONFIG_RELOAD_NOT_APPLIED``) and
        listed as ``not_applied``, never silently dropped. Asked for before the settings
        are in force (a SIGHUP while the service starts), it is made once they are
        (``CONFIG_RELOAD_DEFERRED`` now, ``CONFIG_RELOADED`` then).
        """
        if self.opts.config_path is None:
            raise ConfigError("no --config file to reload")
        if not self._exported:
            self._reload_asked = source
            log_event(log, "CONFIG_RELOAD_DEFERRED", logging.WARNING, source=source)
            return {"deferred": str(self.opts.config_path)}
        fresh = load_config_file(self.opts.config_path)
        conf = configured(fresh.reconcile, file_armed(fresh), self.opts.env, self.opts.config_path)
        settings = settings_of(conf.reconcile, conf.armed, self._mainnet_at_start, conf.origins)
        changes = self.operator.reconfigure(settings, source)
        held = self.operator.report_held(source)
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
        gate5 = self.operator.in_force[ALLOW_MAINNET_FIELD]
        log_event(
            log,
            "CONFIG_RELOADED",
            source=source,
            changes=len(changes),
            held=len(held),
            allow_mainnet_trade=gate5.describe(),
        )
        return {
            "reloaded": str(self.opts.config_path),
            "changes": changes,
            "not_applied": not_applied,
            "held": [item.to_json() for item in held],
            "allow_mainnet_trade": gate5.to_json(),
        }
