"""The service's paths, checked before it starts: every failure is exit 2, naming the flag or
variable and the path.

``check_inputs`` only reads (it opens an existing expected-state database to check it; a
missing one is refused unless ``--create-expected-db`` asks the service to create it later),
so bad input found there changes nothing.
``check_outputs`` runs after the event log is open (``--log-file`` creates its folder,
as the runbooks' ``/var/log/grinder/app.log`` needs): the folders of ``--metrics-out`` and
``--audit-out`` must exist, since a missing one is most likely a typo, while the service
creates the folders of ``BUDGET_STATE_PATH`` and ``GRINDER_AUDIT_PATH`` as it always did,
and of ``--ledger-db`` (a new ledger starts empty, which loses nothing).
Each of them must be writable, so no artifact write at exit fails for a bad path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from grinder.incidents.records import LedgerError
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.reconcile.config import ConfigError
from grinder.service.control import check_socket_path
from grinder.service.options import ServiceOptions
from grinder.service.state import missing_expected_db
from grinder.state.expected import ExpectedStoreError
from grinder.state.sqlite import SqliteExpectedStore


def control_socket_where(opts: ServiceOptions, env: Mapping[str, str]) -> str:
    """What chose the control socket's path: the flag, else ``XDG_RUNTIME_DIR``."""
    if opts.control_socket is not None:
        return "--control-socket"
    return "XDG_RUNTIME_DIR" if env.get("XDG_RUNTIME_DIR") else "--control-socket"


def check_inputs(opts: ServiceOptions, control_socket: Path, env: Mapping[str, str]) -> None:
    """The checks that change nothing: control socket path, expected-state file."""
    check_socket_path(control_socket, control_socket_where(opts, env))
    if opts.expected_db is not None:
        check_expected_db(opts.expected_db, opts.expected_db_where, create=opts.create_expected_db)
    if opts.ledger_db is not None:
        check_ledger_db(opts.ledger_db, opts.ledger_db_where)


def check_ledger_db(path: Path, where: str) -> None:
    """An existing (non-empty) file must be an incident ledger that reads back whole; a
    missing one is created at start (``check_outputs`` creates its folder)."""
    if not _exists(path, where):
        return
    try:
        if path.is_file() and path.stat().st_size == 0:
            return
        SqliteIncidentStore(path, readonly=True).close()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot use {path} ({exc.strerror})") from None
    except LedgerError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_expected_db(path: Path, where: str, *, create: bool = False) -> None:
    """An existing file must be a readable expected-state database. A missing one is refused
    (a typo must not read as "the bot expects nothing") unless ``create``, which needs its
    folder."""
    if not _exists(path, where):
        if not create:
            raise ConfigError(missing_expected_db(path, where))
        _folder_of(path, where, create=False)
        return
    try:
        if path.is_file() and path.stat().st_size == 0:
            if create:
                return  # an empty file to start from, on purpose: the service initialises it
            raise ConfigError(
                f"{where}: {path} is empty, not an expected-state database (the bot's recorder "
                "creates it; to start with an empty one on purpose: --create-expected-db, or "
                "grinder expected adopt)"
            )
        SqliteExpectedStore(path).close()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot use {path} ({exc.strerror})") from None
    except ExpectedStoreError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_outputs(opts: ServiceOptions) -> None:
    """Folders of the files written during the run and at exit: present and writable."""
    if opts.metrics_out is not None:
        check_output_file(opts.metrics_out, "--metrics-out", create_folder=False)
    if opts.audit_out is not None:
        check_output_file(opts.audit_out, "--audit-out", create_folder=False)
    elif opts.artifacts_dir is None and opts.env.audit_enabled:
        check_output_file(opts.env.audit_path, "GRINDER_AUDIT_PATH", create_folder=True)
    if opts.env.budget_state_path is not None:
        check_output_file(opts.env.budget_state_path, "BUDGET_STATE_PATH", create_folder=True)
    if opts.ledger_db is not None:
        check_output_file(opts.ledger_db, opts.ledger_db_where, create_folder=True)


def check_output_file(path: Path, where: str, *, create_folder: bool) -> None:
    if _exists(path, where) and path.is_dir():
        raise ConfigError(f"{where}: {path} is a folder, not a file")
    folder = _folder_of(path, where, create=create_folder)
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot write {path}: folder {folder} is not writable ({exc.strerror})"
        ) from None
    if path.is_file() and not os.access(path, os.W_OK):
        raise ConfigError(f"{where}: cannot write {path}: permission denied")


def _exists(path: Path, where: str) -> bool:
    try:
        return path.exists()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot use {path} ({exc.strerror})") from None


def _folder_of(path: Path, where: str, *, create: bool) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{where}: cannot create folder {folder} for {path} ({exc.strerror})"
            ) from None
    if not _exists(folder, where):
        raise ConfigError(f"{where}: folder {folder} of {path} does not exist")
    if not folder.is_dir():
        raise ConfigError(f"{where}: {folder} (the folder of {path}) is not a folder")
    return folder
