"""Where a starting service keeps its operator state, and what it prints of it.

Alone: ``operator_state.json`` next to ``BUDGET_STATE_PATH`` (the state folder the operator
already keeps), else in the control socket's private folder. With HA: Redis
(``grinder.ha.operator``), and that file is the instance's local copy. The file is read
before the run starts: unreadable or corrupt is a ``ConfigError`` (exit 2), nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grinder.ha.runtime import HaRuntime
from grinder.operator.state import OperatorState, OperatorStateError
from grinder.operator.stores import FILE_NAME as OPERATOR_STATE_FILE
from grinder.operator.stores import FileOperatorStore, OperatorStore
from grinder.reconcile.config import ConfigError
from grinder.service.artifacts import Tee
from grinder.service.options import ServiceOptions


def operator_state_path(opts: ServiceOptions, control_socket: Path) -> Path:
    """Where the operator state lives alone (and an HA instance keeps its local copy): next
    to ``BUDGET_STATE_PATH`` when it is set, else in the control socket's private folder."""
    budget = opts.env.budget_state_path
    folder = budget.parent if budget is not None else control_socket.parent
    return folder / OPERATOR_STATE_FILE


@dataclass(frozen=True)
class OperatorStores:
    store: OperatorStore
    """Where the deployment's operator state lives: Redis with HA, else the file."""
    mirror: FileOperatorStore | None
    """With HA, this instance's local copy (the file)."""
    known: OperatorState | None
    """What the file holds now (alone: the state itself; with HA: the last copy)."""


def open_operator_store(
    opts: ServiceOptions, control_socket: Path, ha: HaRuntime | None
) -> OperatorStores:
    """The operator state's stores; a file that cannot be read or is corrupt is a
    ``ConfigError`` (exit 2)."""
    local = FileOperatorStore(operator_state_path(opts, control_socket))
    try:
        known = local.read()
    except OperatorStateError as exc:
        where = "the local copy of the operator state" if ha is not None else "operator state"
        raise ConfigError(f"{where}: {exc}") from None
    if ha is not None:
        return OperatorStores(ha.operator_store, local, known)
    return OperatorStores(local, None, known)


def print_operator_state(tee: Tee, stores: OperatorStores) -> None:
    """Where the operator state lives and, alone, the rollbacks standing at start."""
    tee.line(f"  {'operator_state:':<19}{stores.store.where}")
    if stores.mirror is None and stores.known is not None:
        for word in stores.known.standing_rollbacks():
            tee.line(f"  {'rollback:':<19}{word.describe()} (until lifted)")
