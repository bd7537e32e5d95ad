"""The Redis connection HA uses: short timeouts, no retries, one error type, up/down state.

Every caller fails closed: a Redis that does not answer within ``timeout_s``
(connect or read) is ``RedisUnavailable``, and whoever asked does not act on a
guess. redis-py's own retries are switched off (its default would retry a
timed-out call ten times with backoff, turning a 250 ms timeout into seconds of
a blocked caller); the elector's loop is the retry.

The client is the synchronous one on purpose: the budget reservation must
happen synchronously right before the exchange call (CONTRACT §5: no
``await`` between the last gate and the write), and the elector runs in its own
thread so that a busy event loop never delays a lease renewal.

Keys live under a namespace (``grinder`` by default): ``<ns>:leader``,
``<ns>:fencing``, ``<ns>:epoch``, ``<ns>:budget:<day>``, ``<ns>:last_write_ms``,
``<ns>:expected:*``. Several deployments can share one Redis with different
namespaces.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from grinder.redaction import mask_url

log = logging.getLogger("grinder.ha")

T = TypeVar("T")

DEFAULT_NAMESPACE = "grinder"
DEFAULT_TIMEOUT_S = 0.25
URL_SCHEMES = ("redis", "rediss", "unix")
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

# Creates the deployment's epoch when it is absent (first start, or a Redis that lost
# its data). The value is "<created ms, Redis clock>:<random>". Needs KEYS[k] = epoch
# key, ARGV[a] = random suffix. Included in the scripts that need it.
ENSURE_EPOCH_LUA = """
local function ensure_epoch(key, suffix)
  local epoch = redis.call('GET', key)
  if epoch then return epoch end
  local t = redis.call('TIME')
  epoch = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
    .. ':' .. suffix
  redis.call('SET', key, epoch)
  return epoch
end
local function epoch_age_ms(epoch)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local created = tonumber(string.match(epoch, '^(%d+):'))
  return now - created
end
"""


class RedisUnavailable(RuntimeError):
    """Redis could not be reached, did not answer in time, or refused the command."""


def check_url(url: str, *, where: str = "--redis-url") -> str:
    """Validate a Redis URL's form (not its reachability); returns it unchanged.

    Every message shows the URL through ``mask_url``: never its password.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc} in {mask_url(url)!r}") from None
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(
            f"{where}: expected redis://host:port[/db], rediss://… or unix:///path, "
            f"got {mask_url(url)!r}"
        )
    if parts.scheme != "unix" and "@" in parts.path + parts.query + parts.fragment:
        raise ValueError(
            f"{where}: '@' after the host in {mask_url(url)!r}: percent-encode '/', '?', '#' "
            "and '@' in a user name or password"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{where}: no host in {mask_url(url)!r}")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"{where}: no socket path in {mask_url(url)!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{where}: expected a port from 1 to 65535 in {mask_url(url)!r}")
    return url


def check_namespace(namespace: str, *, where: str = "--redis-namespace") -> str:
    if not _NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"{where}: expected 1-64 characters [A-Za-z0-9._:-] starting with a letter or "
            f"digit, got {namespace!r}"
        )
    return namespace


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class RedisConnection:
    """A synchronous Redis client with short timeouts and a known up/down state.

    ``run(op, fn)`` calls ``fn(client)`` and turns every Redis or socket error into
    ``RedisUnavailable``; each outcome updates ``up``. Listeners registered with
    ``on_state`` hear of every change (up → down, down → up), from whichever thread
    noticed it; ``on_error`` hears of every failed operation by name.

    After a failure, calls fail at once for ``backoff_s`` instead of each waiting
    out a timeout on a Redis known to be down -- except ``probe=True`` calls (the
    elector's, ``ping``), which keep trying and close the circuit when Redis
    answers again. Thread-safe (redis-py's connection pool is).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        client_name: str | None = None,
        backoff_s: float = 1.0,
    ) -> None:
        check_url(url)
        check_namespace(namespace)
        if not timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        self.url = url
        self.namespace = namespace
        self.timeout_s = timeout_s
        # Typed loosely on purpose: redis-py's reply types are unions of bytes/str/int/Any;
        # every reply is checked where it is used.
        self.client: Any = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            decode_responses=True,
            health_check_interval=0,
            client_name=client_name,
        )
        self._up: bool | None = None
        self._lock = threading.Lock()
        self._state_listeners: list[Callable[[bool, str | None], None]] = []
        self._error_listeners: list[Callable[[str], None]] = []
        self.errors = 0
        self.last_error: str | None = None
        self.backoff_s = backoff_s
        self._failed_at = 0.0

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    @property
    def up(self) -> bool:
        """True when the last operation succeeded (False before the first one)."""
        return bool(self._up)

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def on_state(self, listener: Callable[[bool, str | None], None]) -> None:
        """``listener(up, error)`` on every change of the up/down state."""
        self._state_listeners.append(listener)

    def on_error(self, listener: Callable[[str], None]) -> None:
        """``listener(op)`` on every failed operation."""
        self._error_listeners.append(listener)

    def script(self, lua: str) -> Script:
        """A Lua script run with EVALSHA (re-sent after a Redis restart flushed it)."""
        script: Script = self.client.register_script(lua)
        return script

    def run(self, op: str, fn: Callable[[Any], T], *, probe: bool = False) -> T:
        if not probe and self._up is False and time.monotonic() - self._failed_at < self.backoff_s:
            raise RedisUnavailable(f"redis {op}: unavailable ({self.last_error})")
        try:
            result = fn(self.client)
        except (redis.RedisError, OSError) as exc:
            self._failed(op, exc)
            raise RedisUnavailable(f"redis {op}: {describe(exc)}") from None
        self._set(True, None)
        return result

    def eval(
        self, op: str, script: Script, keys: list[str], args: list[Any], *, probe: bool = False
    ) -> Any:
        return self.run(op, lambda _c: script(keys=keys, args=args), probe=probe)

    def ping(self) -> bool:
        try:
            return bool(self.run("ping", lambda c: c.ping(), probe=True))
        except RedisUnavailable:
            return False

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self.client.close()

    # --- internals -----------------------------------------------------------------------

    def _failed(self, op: str, exc: BaseException) -> None:
        text = describe(exc)
        self.errors += 1
        self.last_error = text
        self._failed_at = time.monotonic()
        for err_listener in list(self._error_listeners):
            try:
                err_listener(op)
            except Exception:  # a listener's bug must not hide the Redis failure
                log.exception("HA_LISTENER_ERROR op=%s", op)
        self._set(False, text)

    def _set(self, up: bool, error: str | None) -> None:
        with self._lock:
            if self._up is up:
                return
            self._up = up
        for listener in list(self._state_listeners):
            try:
                listener(up, error)
            except Exception:
                log.exception("HA_LISTENER_ERROR state=%s", up)
