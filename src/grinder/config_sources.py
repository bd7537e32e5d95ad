"""Where configuration comes from, read strictly: the environment and a TOML file.

The settings themselves and their rules are the core's (``grinder.reconcile.config``:
``ReconcileConfig``, ``ConfigError``); this module reads them -- the ``[reconcile]`` table
of a file (``reconcile_from_toml``), the variables the runbooks use (``RuntimeEnv``),
gate 5's variable at the moment of the write (``mainnet_trade_allowed``) -- and checks
the text an operator gives (``zero_one``, ``env_*``, ``check_http_url``). Every bad value
is a ``ConfigError`` that names what and where (exit 2).
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.redaction import mask_url


def reconcile_from_toml(path: Path) -> ReconcileConfig:
    """Read the ``[reconcile]`` table of a TOML file (or the whole file if it has none)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    table = raw.get("reconcile", raw)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [reconcile] must be a table")
    return ReconcileConfig.from_mapping(table, source=str(path))


def zero_one(raw: str, where: str) -> bool:
    """Exactly ``1`` (True) or ``0`` (False); anything else, empty too, is a ``ConfigError``
    naming ``where`` (the variable or the flag) and the value."""
    if raw == "1":
        return True
    if raw == "0":
        return False
    raise ConfigError(f"{where}: expected '0' or '1', got {raw!r}")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``0`` or ``1``; unset means ``default``; anything else is a ``ConfigError``."""
    raw = env.get(name)
    if raw is None:
        return default
    return zero_one(raw, name)


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    if not _DECIMAL_TEXT.fullmatch(raw):
        raise ConfigError(f"{name}: expected a number, got {raw!r}")
    value = float(raw)
    if math.isinf(value) or value < minimum:
        raise ConfigError(f"{name}: expected a number >= {minimum:g}, got {raw!r}")
    return value


_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def env_text(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value; unset is None; set but empty (or blank) is a ``ConfigError``."""
    raw = env.get(name)
    return None if raw is None else text_value(raw, name)


def text_value(raw: str, name: str) -> str:
    """A variable's text, refused when empty or blank (``name``: the variable)."""
    if not raw.strip():
        raise ConfigError(
            f"{name}: expected a value, got an empty value (unset it for the default)"
        )
    return raw


def env_path(env: Mapping[str, str], name: str, default: Path | None) -> Path | None:
    raw = env.get(name)
    return default if raw is None else path_value(raw, name)


def path_value(raw: str, name: str) -> Path:
    """A variable's path, refused when empty or blank (``name``: the variable)."""
    if not raw.strip():
        raise ConfigError(f"{name}: expected a path, got an empty value")
    return Path(raw)


def check_http_url(url: str, where: str) -> str:
    """``url`` when it is http(s)://host[:port][/path], else a ``ConfigError`` naming ``where``.

    The message shows the URL through ``mask_url``: never its password.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} in {mask_url(url)!r}") from None
    if "@" in parts.path + parts.query + parts.fragment:
        raise ConfigError(
            f"{where}: '@' after the host in {mask_url(url)!r}: percent-encode '/', '?', '#' "
            "and '@' in a user name or password"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: expected http(s)://host[:port], got {mask_url(url)!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"{where}: expected a port from 1 to 65535 in {mask_url(url)!r}")
    return url


DEFAULT_AUDIT_PATH = Path("audit/reconcile.jsonl")
DEFAULT_BUDGET_STALE_HOURS = 24.0


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    """The environment variables the runbooks use, parsed strictly."""

    dry_run: bool
    allow_active: bool
    armed: bool
    allow_mainnet_trade: bool
    audit_enabled: bool
    audit_path: Path
    budget_state_path: Path | None
    budget_state_stale_hours: float
    raw: Mapping[str, str | None]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeEnv:
        src = os.environ if env is None else env
        names = (
            "RECONCILE_DRY_RUN",
            "RECONCILE_ALLOW_ACTIVE",
            "ARMED",
            "ALLOW_MAINNET_TRADE",
            "GRINDER_AUDIT_ENABLED",
            "GRINDER_AUDIT_PATH",
            "BUDGET_STATE_PATH",
            "BUDGET_STATE_STALE_HOURS",
        )
        return cls(
            dry_run=env_bool(src, "RECONCILE_DRY_RUN", True),
            allow_active=env_bool(src, "RECONCILE_ALLOW_ACTIVE", False),
            armed=env_bool(src, "ARMED", False),
            allow_mainnet_trade=env_bool(src, "ALLOW_MAINNET_TRADE", False),
            audit_enabled=env_bool(src, "GRINDER_AUDIT_ENABLED", False),
            audit_path=env_path(src, "GRINDER_AUDIT_PATH", DEFAULT_AUDIT_PATH)
            or DEFAULT_AUDIT_PATH,
            budget_state_path=env_path(src, "BUDGET_STATE_PATH", None),
            budget_state_stale_hours=env_float(
                src, "BUDGET_STATE_STALE_HOURS", DEFAULT_BUDGET_STALE_HOURS
            ),
            raw={name: src.get(name) for name in names},
        )


def mainnet_trade_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Gate 5, read at the moment of the write: ``ALLOW_MAINNET_TRADE`` is exactly ``1``."""
    src = os.environ if env is None else env
    return src.get("ALLOW_MAINNET_TRADE") == "1"
