"""Keeping credentials out of every output: one set of masking rules for the whole project.

Three layers, each built on the one before:

* ``mask_url(url)`` -- a URL the operator gave (Redis, venue, metrics, Prometheus),
  safe to print: the password of its user info (``redis://:***@host``, the whole
  user info when it has no password: ``https://***@host``) and the values of
  secret query parameters (``?password=***``) are masked, also when the URL is
  malformed (a scheme without ``//``, a password with an unencoded ``/``).
* ``mask_secrets(text)`` -- credentials in free text: every URL in it masked as
  above, a ``user:password@host`` without a scheme too, and every *registered*
  secret value wherever it appears. It changes nothing else, so it is safe on any
  output (a ``"token": 5`` in JSON stays); it is what reaches stdout and stderr.
* ``redact_text(text)`` / ``redact(value)`` -- log lines and audit records: also
  ``key=value`` / ``key: value`` pairs with a secret-looking key, ``Bearer …``,
  and (``redact``) every field whose name looks secret.

Registered secrets are values the process was given as credentials: environment
variables with a secret-looking name (``BINANCE_API_SECRET``,
``GRINDER_SIM_API_KEY``…), the contents of ``…_FILE`` variables when read, and the
passwords inside URL options and URL-valued variables (``GRINDER_REDIS_URL``).
Values shorter than ``MIN_SECRET_LEN`` are not registered (masking every ``pw`` in
the output would garble it); the structural rules still mask them in URLs.

``masked_std_streams()`` puts ``mask_secrets`` in front of ``sys.stdout`` and
``sys.stderr`` for the length of a command, so that whatever a library prints
(an exception text, a warning) passes the same rules as the project's own lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any, TextIO
from urllib.parse import unquote

MASK = "***"
"""What replaces a password or secret value in a URL and in free text."""
REDACTED = "***REDACTED***"
"""What replaces a secret field or ``key=value`` secret in log lines and audit records."""
MIN_SECRET_LEN = 6

_SECRET_NAME_PARTS = (
    "apikey",
    "secret",
    "token",
    "signature",
    "password",
    "passphrase",
    "authorization",
    "xmbxapikey",
    "listenkey",
    "privatekey",
)

# --- names --------------------------------------------------------------------------------


def is_secret_name(name: str) -> bool:
    """Whether a field, parameter or variable called ``name`` holds a secret."""
    norm = re.sub(r"[^a-z]", "", name.lower())
    return any(part in norm for part in _SECRET_NAME_PARTS)


# --- registered secret values ----------------------------------------------------------------

_known: tuple[str, ...] = ()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its percent-decoded form) wherever it appears from now on."""
    global _known
    if not value:
        return
    candidates = {value.strip(), unquote(value.strip())}
    fresh = {v for v in candidates if len(v) >= MIN_SECRET_LEN and v not in _known}
    if not fresh:
        return
    with _known_lock:
        # Longest first, so that a secret containing another is masked whole.
        _known = tuple(sorted(set(_known) | fresh, key=len, reverse=True))


def register_url(url: str | None) -> None:
    """Register the password and the secret query values of a URL (``register_secret``)."""
    if not url:
        return
    _prefix, userinfo, rest = _split_userinfo(url)
    if userinfo is not None and ":" in userinfo:
        register_secret(userinfo.partition(":")[2])
    for name, value in _QUERY_PARAM.findall(rest.partition("?")[2]):
        if is_secret_name(name):
            register_secret(value)


def register_environment(env: Mapping[str, str]) -> None:
    """Register the values of secret-named variables and the passwords of URL values.

    ``…_FILE`` variables hold paths: their contents are registered where they are read.
    """
    for name, value in env.items():
        if not value or name.upper().endswith("_FILE"):
            continue
        if is_secret_name(name):
            register_secret(value)
        if "@" in value or "?" in value:
            register_url(value)


def _mask_known(text: str) -> str:
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    return text


# --- URLs ------------------------------------------------------------------------------------

_SCHEME_PREFIX = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?/*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_QUERY_PARAM = re.compile(r"(?:^|(?<=[&;]))([^=&;#\s]+)=([^&;#\s]*)")


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme and slashes, user info or None, the rest)``. The user info ends at the last
    ``@``: a password with an unencoded ``/``, ``?`` or ``#`` is still all of it."""
    match = _SCHEME_PREFIX.match(url)
    start = match.end() if match else 0
    head, at, tail = url[start:].rpartition("@")
    if not at:
        return url[:start], None, url[start:]
    return url[:start], head, tail


def _mask_query(rest: str) -> str:
    path, q, query = rest.partition("?")
    if not q:
        return rest

    def one(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2)
        return f"{name}={MASK}" if value and is_secret_name(name) else m.group(0)

    return f"{path}?{_QUERY_PARAM.sub(one, query)}"


def _mask_url_form(url: str) -> str:
    prefix, userinfo, rest = _split_userinfo(url)
    if userinfo is None:
        return prefix + _mask_query(rest)
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else MASK
    return f"{prefix}{shown}@{_mask_query(rest)}"


def mask_url(url: str) -> str:
    """``url`` safe to print and log: password, lone user info and secret query values masked.

    >>> mask_url("redis://:s3cret@h:6379/0")
    'redis://:***@h:6379/0'
    >>> mask_url("http://user:pw@127.0.0.1:8765")
    'http://user:***@127.0.0.1:8765'
    """
    return _mask_known(_mask_url_form(url))


# --- free text -------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\s'\"<>`]+")


def _mask_token(m: re.Match[str]) -> str:
    token = m.group(0)
    if "@" not in token and "?" not in token:
        return token
    found = _SCHEME.search(token)
    if found is not None:
        return token[: found.start()] + _mask_url_form(token[found.start() :])
    head, at, tail = token.rpartition("@")
    if at and ":" in head:  # user:password@host without a scheme
        return f"{head.partition(':')[0]}:{MASK}@{tail}"
    return token


def mask_secrets(text: str) -> str:
    """``text`` with the credentials in it masked: URLs' passwords and secret query values,
    ``user:password@host``, and every registered secret. Nothing else changes."""
    if not text:
        return text
    return _mask_known(_TOKEN.sub(_mask_token, text))


# key=value, key: value, 'key': 'value', "key": "value" (query strings, headers, reprs, JSON);
# not a URL path's last segment ("POST /fapi/v1/listenKey: waiting 60 s" is no secret)
_SECRET_IN_TEXT = re.compile(
    r"(?i)([\"']?)(?<!/)\b(signature|api[_-]?key|api[_-]?secret|x-mbx-apikey|secret|token|password"
    r"|listen[_-]?key|authorization)\1(\s*[=:]\s*)([\"']?)(?:bearer\s+)?([^&\s,;\"'}]+)"
)
_BEARER = re.compile(r"(?i)\bbearer\s+(?!\*\*\*)[A-Za-z0-9._~+/=-]+")


def _redact_pair(m: re.Match[str]) -> str:
    if m.group(5).startswith(MASK):  # masked already
        return m.group(0)
    return f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{REDACTED}"


def redact_text(text: str) -> str:
    """``mask_secrets`` plus secret ``key=value`` pairs and bearer tokens (log lines, audit)."""
    masked = _SECRET_IN_TEXT.sub(_redact_pair, mask_secrets(text))
    return _BEARER.sub(f"Bearer {REDACTED}", masked)


def redact(value: Any, *, by_name: bool = True) -> Any:
    """A copy of ``value`` with every string passed through ``redact_text`` and, with
    ``by_name``, every field whose name looks secret replaced by ``REDACTED``. NaN and
    infinities become strings (JSON has no such numbers)."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if by_name and is_secret_name(str(k)) else redact(v, by_name=by_name))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v, by_name=by_name) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def masked_repr(obj: Any) -> str:
    """The dataclass ``repr`` of ``obj`` with its credentials masked (for ``__repr__``)."""
    fields = ", ".join(
        f"{f.name}={getattr(obj, f.name)!r}" for f in dataclasses.fields(obj) if f.repr
    )
    return mask_secrets(f"{type(obj).__qualname__}({fields})")


# --- standard streams ------------------------------------------------------------------------


class MaskingStream(io.TextIOBase):
    """A text stream that writes ``mask_secrets`` of whole lines to ``stream``.

    A partial line waits for its end or for ``flush()`` (``print(…, flush=True)``,
    ``click.echo`` and ``input`` flush), so a URL is never split between two maskings.
    It has no ``buffer``: bytes cannot go around it.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                done, _, self._pending = self._pending.rpartition("\n")
                self.stream.write(mask_secrets(done + "\n"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.stream.write(mask_secrets(self._pending))
                self._pending = ""
        self.stream.flush()

    def close(self) -> None:  # the underlying stream stays open
        with contextlib.suppress(ValueError, OSError):
            self.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", None)


@contextlib.contextmanager
def masked_std_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` pass ``mask_secrets`` until the block ends."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, MaskingStream):
        sys.stdout = MaskingStream(sys.stdout)
    if not isinstance(sys.stderr, MaskingStream):
        sys.stderr = MaskingStream(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
        sys.stdout, sys.stderr = saved
