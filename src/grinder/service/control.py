"""Runtime control of a running service: the rollbacks of runbook 13 without a restart.

Transport: HTTP over a Unix domain socket in a directory only the service's
user can enter (mode 0700; the socket itself 0600), so other users of the
machine cannot reach it. Default path: ``$XDG_RUNTIME_DIR/grinder/control.sock``,
or ``/tmp/grinder-$UID/control.sock`` when ``XDG_RUNTIME_DIR`` is unset.

Endpoints (JSON):

* ``GET /status`` — settings in force, mode, readiness, stream state, the
  cooldown anchors the next run starts from (``cooldown``: with HA the shared
  one), plans in the last hour (``planned_last_hour``).
* ``GET /position?symbol=BTCUSDT`` — the service's observed position of that
  symbol (each ``position_side`` with a quantity) and its mark price, read from
  the venue now as a flatten reads it (``grinder gates --position``).
* ``POST /set`` ``{"field": "<ReconcileConfig field>", "value": …}`` — e.g.
  ``action`` → ``none``, ``dry_run`` → ``true``.
* ``POST /arm`` ``{"armed": false}`` — disarm (or arm) the executor.
* ``POST /mainnet`` ``{"allow": false}`` — the process's ``ALLOW_MAINNET_TRADE``.
* ``POST /reload`` — re-read the config file (as SIGHUP does).
* ``POST /ha/step-down`` ``{"hold_s": 30}`` — HA manual failover: this instance
  gives its lease up (a follower takes over at once) and does not campaign
  again for ``hold_s`` seconds (default 30).

Every change is validated, applied to the live objects (effective before the
next exchange write), logged as ``CONTROL_CHANGE``, audited, and counted. Every
text of a reply passes ``grinder.redaction.redact`` (field names are kept: the
fencing ``token`` of ``ha`` is not a secret).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from grinder.reconcile.config import ConfigError, ReconcileConfig, validation_message
from grinder.redaction import redact
from grinder.service.httpd import start_unix_site

ALLOW_MAINNET = "ALLOW_MAINNET_TRADE"
_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,31}$")


DEFAULT_SOCKET_TEXT = (
    "$XDG_RUNTIME_DIR/grinder/control.sock, or /tmp/grinder-$UID/control.sock when "
    "XDG_RUNTIME_DIR is unset"
)
"""``default_socket_path`` in words: the help of ``--control-socket`` and ``--socket``, and
the docs (a test keeps them in step)."""


def default_socket_path(env: Mapping[str, str] | None = None) -> Path:
    """The control socket's path when none is given (``DEFAULT_SOCKET_TEXT``)."""
    src = os.environ if env is None else env
    runtime = src.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "grinder" if runtime else Path(f"/tmp/grinder-{os.getuid()}")
    return base / "control.sock"


MAX_SOCKET_PATH = 107
"""Longest Unix socket path, in bytes (Linux: ``sun_path`` holds 108 with the final NUL)."""


def check_socket_path(path: Path, where: str = "--control-socket") -> None:
    """What can be known of a socket path before binding it (``ConfigError`` naming ``where``)."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ConfigError(
            f"{where}: {path} is too long for a Unix socket ({size} bytes, at most "
            f"{MAX_SOCKET_PATH})"
        )
    try:
        if path.is_symlink() or path.exists():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"{where}: {path} exists and is not a socket")
            _refuse_if_answering(path, where)
            return
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ConfigError(f"{where}: cannot create {path}: {folder} is not a folder")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot use {path} ({exc.strerror})") from None


async def start_control_site(
    app: web.Application, path: Path, where: str = "--control-socket"
) -> web.AppRunner:
    """Serve ``app`` on the Unix socket ``path`` (0600, in a 0700 folder)."""
    check_socket_path(path, where)
    try:
        prepare_socket_dir(path)
        runner = await start_unix_site(app, str(path))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot listen on {path} ({exc.strerror or exc})") from None
    try:
        os.chmod(path, 0o600)
    except OSError:
        await runner.cleanup()
        raise
    return runner


def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory 0700 and refuse one that others can enter."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"--control-socket: {directory} is owned by another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"--control-socket: {path} exists and is not a socket")
        _refuse_if_answering(path, "--control-socket")
        path.unlink()  # a stale socket left by a service that is gone


def _refuse_if_answering(path: Path, where: str) -> None:
    """A socket another service still listens on is never taken over."""
    if _socket_answers(path):
        raise ConfigError(
            f"{where}: another service is listening on {path}; "
            "give this one its own --control-socket"
        )


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def check_field(field: str) -> None:
    """``ConfigError`` unless ``field`` is a ``ReconcileConfig`` field."""
    if field not in ReconcileConfig.model_fields:
        known = ", ".join(sorted(ReconcileConfig.model_fields))
        raise ConfigError(f"unknown field {field!r}; known: {known}")


def parse_value(config: ReconcileConfig, field: str, value: Any) -> Any:
    """A control value for ``field``: JSON values as given, strings coerced by field type."""
    check_field(field)
    if not isinstance(value, str):
        return value
    if value.strip().lower() in ("none", "null") and _optional(field):
        return None  # a setting that may be unset (flatten_max_slippage_bps)
    current = getattr(config, field)
    if isinstance(current, bool):
        lowered = value.strip().lower()
        if lowered in ("1", "true"):
            return True
        if lowered in ("0", "false"):
            return False
        raise ConfigError(f"{field}: expected true/false (or 1/0), got {value!r}")
    if isinstance(current, list) or (current is None and field == "strategy_allowlist"):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(current, int | float) and not isinstance(current, bool):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # also an int past Python's digit limit
            raise ConfigError(f"{field}: expected a number, got {_short(value)}") from None
    return value


def _optional(field: str) -> bool:
    """Whether ``field`` of ``ReconcileConfig`` may be None."""
    return type(None) in typing.get_args(ReconcileConfig.model_fields[field].annotation)


class Controls:
    """The live settings a control command may change."""

    def __init__(
        self,
        config: ReconcileConfig,
        *,
        get_armed: Callable[[], bool],
        set_armed: Callable[[bool], None],
        gate_env: dict[str, str],
        status: Callable[[], dict[str, Any]],
        reload: Callable[[], dict[str, Any]],
        on_change: Callable[[str, str, Any, Any], None],
        ha_step_down: Callable[[float], dict[str, Any]] | None = None,
        position: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.config = config
        self._get_armed = get_armed
        self._set_armed = set_armed
        self.gate_env = gate_env
        self._status = status
        self._reload = reload
        self._on_change = on_change
        self._ha_step_down = ha_step_down
        self._position = position

    def status(self) -> dict[str, Any]:
        return self._status()

    async def position(self, symbol: str) -> dict[str, Any]:
        if self._position is None:
            raise ConfigError("this service does not report positions")
        if not _SYMBOL_RE.match(symbol):
            raise ConfigError(f"/position needs ?symbol=SYMBOL (e.g. BTCUSDT), got {symbol!r}")
        return await self._position(symbol)

    def set_field(self, field: str, value: Any, *, source: str = "control") -> dict[str, Any]:
        """Change one setting (``value`` as typed: coerced by the field's type)."""
        parsed = parse_value(self.config, field, value)
        return self.set_fields({field: parsed}, source=source, shown=value)[0]

    def set_fields(
        self, values: Mapping[str, Any], *, source: str, shown: Any = None
    ) -> list[dict[str, Any]]:
        """Change settings together, all or none: the configuration they make is checked
        whole (every rule of ``ReconcileConfig``) before anything changes; a refusal is a
        ``ConfigError`` and leaves every setting as it was. ``shown`` is the value the
        operator typed, for the message."""
        for field in values:
            check_field(field)
        old = {field: getattr(self.config, field) for field in values}
        try:
            self.config.apply(values)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, shown)) from None
        results = []
        for field, before in old.items():
            new = getattr(self.config, field)
            if new != before:
                self._on_change(source, field, before, new)
            results.append({"field": field, "old": _plain(before), "new": _plain(new)})
        return results

    def arm(self, armed: bool, *, source: str = "control") -> dict[str, Any]:
        old = self._get_armed()
        self._set_armed(armed)
        if old != armed:
            self._on_change(source, "armed", old, armed)
        return {"field": "armed", "old": old, "new": armed}

    def allow_mainnet(self, allow: bool, *, source: str = "control") -> dict[str, Any]:
        old = self.gate_env.get(ALLOW_MAINNET) == "1"
        if allow:
            self.gate_env[ALLOW_MAINNET] = "1"
        else:
            self.gate_env.pop(ALLOW_MAINNET, None)
        if old != allow:
            self._on_change(source, ALLOW_MAINNET, old, allow)
        return {"field": ALLOW_MAINNET, "old": old, "new": allow}

    def reload(self) -> dict[str, Any]:
        return self._reload()

    def ha_step_down(self, hold_s: float) -> dict[str, Any]:
        if self._ha_step_down is None:
            raise ConfigError("HA is off (no --redis-url): there is no leadership to give up")
        return self._ha_step_down(hold_s)


def _short(value: str) -> str:
    """``value`` quoted, cut to a readable length for a one-line message."""
    return repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"


def _plain(value: Any) -> Any:
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, list | tuple | str | int | float | bool) or value is None:
        return value
    return str(value)


def build_control_app(controls: Controls) -> web.Application:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(controls.status(), dumps=_dumps)

    async def position(request: web.Request) -> web.Response:
        try:
            result = await controls.position(request.query.get("symbol", ""))
        except ConfigError as exc:
            return _error(str(exc))
        return web.json_response(result, dumps=_dumps)

    async def post(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # ValueError: bad JSON, or an int past the digit limit
            return _error("request body is not JSON")
        if not isinstance(body, dict):
            return _error("request body must be a JSON object")
        try:
            result = _dispatch(controls, request.path, body)
        except ConfigError as exc:
            return _error(str(exc))
        return web.json_response(result, dumps=_dumps)

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/position", position)
    for path in ("/set", "/arm", "/mainnet", "/reload", "/ha/step-down"):
        app.router.add_post(path, post)
    return app


def _dispatch(controls: Controls, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if path == "/set":
        field = body.get("field")
        if not isinstance(field, str) or "value" not in body:
            raise ConfigError('/set needs {"field": "<name>", "value": <value>}')
        return controls.set_field(field, body["value"])
    if path == "/arm":
        armed = body.get("armed")
        if not isinstance(armed, bool):
            raise ConfigError('/arm needs {"armed": true|false}')
        return controls.arm(armed)
    if path == "/mainnet":
        allow = body.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError('/mainnet needs {"allow": true|false}')
        return controls.allow_mainnet(allow)
    if path == "/ha/step-down":
        hold = body.get("hold_s", 30)
        if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold <= 86_400:
            raise ConfigError('/ha/step-down needs {"hold_s": <seconds, 0-86400>} (default 30)')
        return controls.ha_step_down(float(hold))
    return controls.reload()


def _error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400, dumps=_dumps)


def _dumps(obj: Any) -> str:
    """A reply's JSON, every text in it redacted (a venue error may quote a URL)."""
    return json.dumps(redact(obj, by_name=False), sort_keys=True, default=str)
