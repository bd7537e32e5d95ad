"""A control socket's ``Controls`` over a real ``OperatorControl`` and live settings, in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grinder.operator.state import Stamp
from grinder.operator.stores import MemoryOperatorStore, OperatorStore
from grinder.reconcile.config import ReconcileConfig
from grinder.service.configured import settings_of
from grinder.service.control import Controls
from grinder.service.live import LiveSettings
from grinder.service.operator import OperatorControl
from grinder.service.settings import check_settings

Change = tuple[str, str, Any, Any]


def make_controls(
    config: ReconcileConfig,
    changes: list[Change] | None = None,
    *,
    store: OperatorStore | None = None,
    status: Callable[[], dict[str, Any]] = dict,
    reload: Callable[[], dict[str, Any]] = dict,
    clock: Callable[[], int] = lambda: 1_767_225_600_000,
) -> Controls:
    """``Controls`` whose words go to ``store`` (memory by default) and land on ``config``;
    every change of a value in force is appended to ``changes`` as (source, field, old, new)."""
    seen = changes if changes is not None else []
    live = LiveSettings(
        config,
        armed=False,
        gate_env={},
        on_change=lambda source, field, old, new, _stamp: seen.append((source, field, old, new)),
    )
    operator = OperatorControl(
        store if store is not None else MemoryOperatorStore(),
        instance="test",
        clock=clock,
        apply=live.apply,
        check=check_settings,
    )
    operator.start(settings_of(config, False, False, {}))
    return Controls(config, operator, status=status, reload=reload, clock=clock)


STAMP = Stamp("alice@host1", 1_767_225_600_000, "test")
