"""``/status``'s settings part: each setting in force with where it comes from.

``settings``: for every setting (``ReconcileConfig``'s fields, ``armed``,
``allow_mainnet_trade``) its value in force and its ``source`` -- ``default``, ``file``,
``env``, ``flag``, or an operator's word: ``operator`` or ``rollback``, with ``by``,
``at_ms`` and ``reason`` -- and, when a word holds it away from the configured value,
``configured`` (what the file or the environment says). ``operator``: where the
deployment's operator state lives, its standing rollbacks and words, and, when it is not
known, why (gate O blocks every write then). Every instance of a deployment shows the same
words: they are one document.
"""

from __future__ import annotations

from typing import Any

from grinder.service.operator import OperatorControl


def settings_status(operator: OperatorControl) -> dict[str, Any]:
    """``{"settings": {...}, "operator": {...}}`` for ``/status``."""
    held = {h.field: h for h in operator.held()}
    settings: dict[str, Any] = {}
    for name, value in operator.in_force.items():
        entry = value.to_json()
        if name in held:
            entry["configured"] = held[name].configured.to_json()
        settings[name] = entry
    return {"settings": settings, "operator": operator.status()}
