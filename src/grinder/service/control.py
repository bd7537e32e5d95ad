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
* ``POST /arm`` ``{"armed": false}`` — disarm (or arm) the executor (gate 4).
* ``POST /mainnet`` ``{"allow": false}`` — gate 5 (``ALLOW_MAINNET_TRADE``).
* ``POST /lift`` ``{"name": "disarm"}`` — lift a standing rollback (``action-none``,
  ``dry-run``, ``disarm``, ``deny-mainnet``), the word on one setting (its name), or
  ``all``.
* ``POST /reload`` — re-read the config file (as SIGHUP does).

``/set``, ``/arm``, ``/mainnet`` and ``/lift`` take ``"by"`` (``user@host``: the CLI sends
its caller's; the socket peer's user otherwise) and an optional ``"reason"``; each is an
operator's *word*, recorded for the whole deployment (``grinder.service.operator``, D57):
a rollback stands through reload, restart and failover until it is lifted.
* ``POST /ha/step-down`` ``{"hold_s": 30}`` — HA manual failover: this instance
  gives its lease up (a follower takes over at once) and does not campaign
  again for ``hold_s`` seconds (default 30).

Every change is validated, recorded, applied to the live objects, logged as
``CONTROL_CHANGE`` (with who and why), audited and counted, and answered only once no
write authorized before it is still on its way to the exchange. Every
text of a reply passes ``grinder.redaction.redact`` (field names are kept: the
fencing ``token`` of ``ha`` is not a secret).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import stat
import struct
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from grinder.clock import Clock, wall_clock_ms
from grinder.operator.decide import Lift, SetWord
from grinder.operator.state import ALLOW_MAINNET_FIELD, ARMED, Stamp, check_by, check_reason, plain
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.redaction import redact
from grinder.service.httpd import start_unix_site
from grinder.service.operator import OperatorControl, OperatorUnavailable

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
    """What the control socket may do: read, and give the operator's words (through
    ``OperatorControl``: recorded for the deployment, applied, and answered once no write
    authorized before is still on its way)."""

    def __init__(
        self,
        config: ReconcileConfig,
        operator: OperatorControl,
        *,
        status: Callable[[], dict[str, Any]],
        reload: Callable[[], dict[str, Any]],
        clock: Clock = wall_clock_ms,
        ha_step_down: Callable[[float], dict[str, Any]] | None = None,
        position: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.config = config
        self.operator = operator
        self._status = status
        self._reload = reload
        self._clock = clock
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

    def stamp(self, by: str, reason: str | None) -> Stamp:
        return Stamp(check_by(by), self._clock(), check_reason(reason, "reason"))

    async def set_field(self, field: str, value: Any, stamp: Stamp) -> dict[str, Any]:
        """Give the word ``value`` (as typed: coerced by the field's type) on ``field``."""
        parsed = parse_value(self.config, field, value)
        return await self.operator.command(SetWord(field, plain(parsed), stamp))

    async def arm(self, armed: bool, stamp: Stamp) -> dict[str, Any]:
        return await self.operator.command(SetWord(ARMED, armed, stamp))

    async def allow_mainnet(self, allow: bool, stamp: Stamp) -> dict[str, Any]:
        return await self.operator.command(SetWord(ALLOW_MAINNET_FIELD, allow, stamp))

    async def lift(self, name: str, stamp: Stamp) -> dict[str, Any]:
        return await self.operator.command(Lift(name, stamp))

    def reload(self) -> dict[str, Any]:
        return self._reload()

    def ha_step_down(self, hold_s: float) -> dict[str, Any]:
        if self._ha_step_down is None:
            raise ConfigError("HA is off (no --redis-url): there is no leadership to give up")
        return self._ha_step_down(hold_s)


def _short(value: str) -> str:
    """``value`` quoted, cut to a readable length for a one-line message."""
    return repr(value) if len(value) <= 40 else f"{value[:20]!r}... ({len(value)} characters)"


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
            result = await _dispatch(controls, request.path, body, _caller(request))
        except ConfigError as exc:
            return _error(str(exc))
        except OperatorUnavailable as exc:
            return _error(str(exc), status=503)
        return web.json_response(result, dumps=_dumps)

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/position", position)
    for path in ("/set", "/arm", "/mainnet", "/lift", "/reload", "/ha/step-down"):
        app.router.add_post(path, post)
    return app


async def _dispatch(
    controls: Controls, path: str, body: dict[str, Any], caller: str
) -> dict[str, Any]:
    if path == "/reload":
        return controls.reload()
    if path == "/ha/step-down":
        hold = body.get("hold_s", 30)
        if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold <= 86_400:
            raise ConfigError('/ha/step-down needs {"hold_s": <seconds, 0-86400>} (default 30)')
        return controls.ha_step_down(float(hold))
    stamp = controls.stamp(body.get("by", caller), body.get("reason"))
    if path == "/set":
        field = body.get("field")
        if not isinstance(field, str) or "value" not in body:
            raise ConfigError('/set needs {"field": "<name>", "value": <value>}')
        return await controls.set_field(field, body["value"], stamp)
    if path == "/arm":
        armed = body.get("armed")
        if not isinstance(armed, bool):
            raise ConfigError('/arm needs {"armed": true|false}')
        return await controls.arm(armed, stamp)
    if path == "/mainnet":
        allow = body.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError('/mainnet needs {"allow": true|false}')
        return await controls.allow_mainnet(allow, stamp)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError('/lift needs {"name": "<rollback, setting or all>"}')
    return await controls.lift(name, stamp)


def _caller(request: web.Request) -> str:
    """``user@host`` of the process at the other end of the socket (its credentials as the
    kernel gives them): who gave a command that did not say."""
    host = socket.gethostname()
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None:
        return f"unknown@{host}"
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        uid = struct.unpack("3i", creds)[1]
    except (AttributeError, OSError):
        return f"unknown@{host}"
    try:
        return f"{pwd.getpwuid(uid).pw_name}@{host}"
    except KeyError:
        return f"uid{uid}@{host}"


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    """A reply's JSON, every text in it redacted (a venue error may quote a URL)."""
    return json.dumps(redact(obj, by_name=False), sort_keys=True, default=str)
