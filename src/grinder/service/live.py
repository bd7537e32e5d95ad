"""The live objects the gates read, set to the settings in force.

``LiveSettings.apply`` puts what is in force (``grinder.operator.merge.effective``: the
configured values under the operator's words) on the objects the executor reads at every
gate evaluation: the ``ReconcileConfig`` (gates 1-3, 6, 7, 9, the limits and the budget),
``armed`` (gate 4) and the gate environment's ``ALLOW_MAINNET_TRADE`` (gate 5). Every value
that changes is reported through ``on_change`` (the service logs and audits it as
``CONTROL_CHANGE``, with who gave the word). The config changes together or not at all;
when a word cannot apply on this instance (a rule of its own configuration refuses it),
the rollbacks alone are applied -- they always can be -- and the reason is returned:
gate O blocks every write while it stands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from grinder.operator.merge import Source, Sourced
from grinder.operator.state import ALLOW_MAINNET_FIELD, ARMED, Stamp, plain
from grinder.reconcile.config import ReconcileConfig, validation_message

ALLOW_MAINNET = "ALLOW_MAINNET_TRADE"
"""Gate 5's variable in the gate environment the executor reads."""

OnChange = Callable[[str, str, Any, Any, Stamp | None], None]
"""``(source, field, old, new, stamp)``: one value in force changed."""


class LiveSettings:
    """See the module doc."""

    def __init__(
        self,
        config: ReconcileConfig,
        *,
        armed: bool,
        gate_env: dict[str, str],
        on_change: OnChange,
        on_armed: Callable[[bool], None] | None = None,
    ) -> None:
        self.config = config
        self.armed = armed
        self.gate_env = gate_env
        self._on_change = on_change
        self._on_armed = on_armed
        self._stamp: Stamp | None = None

    @property
    def allow_mainnet(self) -> bool:
        return self.gate_env.get(ALLOW_MAINNET) == "1"

    def apply(
        self, in_force: Mapping[str, Sourced], source: str, stamp: Stamp | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Put ``in_force`` on the live objects; the changes made, and why the words
        cannot apply here (None when they can). ``stamp``: who made a change whose value
        carries no stamp of its own (a lift returns a setting to its configured value)."""
        self._stamp = stamp
        fields = ReconcileConfig.model_fields
        old = {n: getattr(self.config, n) for n in fields}
        changed = {
            n: s.value for n, s in in_force.items() if n in fields and plain(old[n]) != s.value
        }
        problem = None
        try:
            self.config.apply(changed)
        except ValidationError as exc:
            problem = f"the operator's words cannot apply here: {validation_message(exc)}"
            self.config.apply(
                {n: v for n, v in changed.items() if in_force[n].source is Source.ROLLBACK}
            )
        changes = [
            self._changed(source, name, old[name], getattr(self.config, name), in_force[name])
            for name in fields
            if plain(getattr(self.config, name)) != plain(old[name])
        ]
        armed = bool(in_force[ARMED].value)
        if armed != self.armed:
            changes.append(self._changed(source, ARMED, self.armed, armed, in_force[ARMED]))
            self.armed = armed
            if self._on_armed is not None:
                self._on_armed(armed)
        allow = bool(in_force[ALLOW_MAINNET_FIELD].value)
        if allow != self.allow_mainnet:
            why = in_force[ALLOW_MAINNET_FIELD]
            changes.append(self._changed(source, ALLOW_MAINNET, not allow, allow, why))
            if allow:
                self.gate_env[ALLOW_MAINNET] = "1"
            else:
                self.gate_env.pop(ALLOW_MAINNET, None)
        return changes, problem

    def _changed(self, source: str, field: str, old: Any, new: Any, why: Sourced) -> dict[str, Any]:
        self._on_change(source, field, old, new, why.stamp or self._stamp)
        return {"field": field, "old": plain(old), "new": plain(new)}
