"""Reconciliation and remediation configuration, and strict environment parsing.

``ReconcileConfig`` is a live object: assignments are validated, and the
executor reads it at every gate evaluation, so ``config.action =
RemediationAction.NONE`` or ``config.dry_run = True`` takes effect before the
next exchange write. Defaults are the safe end of the operator ceremony.

Every change is checked on the whole configuration it would make (``CheckedModel``):
the field rules and the rules that tie fields together (the identity rules of
``grinder.reconcile.identity.check_identity``), at start, on reload and on every
control change alike; a change that fails leaves the live object as it was.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from grinder.reconcile.identity import DEFAULT_PREFIX, DEFAULT_STRATEGY_ID, check_identity
from grinder.redaction import mask_url

MAX_EXPECTED_HEARTBEAT_AGE_S = 600.0
"""Gate E's limit may not be raised past 10 minutes: a larger one would let a bot that
stopped long ago vouch for the expected state (``1e300`` would switch the gate off)."""


MAX_FLATTEN_SLIPPAGE_BPS = Decimal(1000)
"""A bound wider than 10% of the mark is no bound."""


class ConfigError(ValueError):
    """Bad configuration or environment; the message names what and where (exit 2)."""


class RemediationAction(StrEnum):
    """The highest escalation the operator permits."""

    NONE = "none"
    CANCEL_ALL = "cancel_all"
    FLATTEN = "flatten"

    def permits(self, wanted: RemediationAction) -> bool:
        return _ACTION_LEVEL[self] >= _ACTION_LEVEL[wanted]


_ACTION_LEVEL = {
    RemediationAction.NONE: 0,
    RemediationAction.CANCEL_ALL: 1,
    RemediationAction.FLATTEN: 2,
}

NonNegInt = Annotated[int, Field(ge=0, strict=True)]
PosInt = Annotated[int, Field(ge=1, strict=True)]
NonNegDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class CheckedModel(BaseModel):
    """A settings model whose changes are all-or-nothing.

    Assigning a field (``config.x = v``) or several (``apply``) validates the whole
    configuration the change would make -- field rules and the model's own
    ``model_validator`` rules -- and changes the live object only when it passes:
    a refused change (``ValidationError``) leaves every field as it was. (Pydantic's
    own assignment validation would leave a value its model rules refuse in place.)
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).model_fields:
            self.apply({name: value})
        else:
            super().__setattr__(name, value)

    def apply(self, changes: Mapping[str, Any]) -> None:
        """Set every field of ``changes`` at once, or none (``ValidationError``)."""
        fields = type(self).model_fields
        merged = {name: getattr(self, name) for name in fields}
        merged.update(changes)
        checked = type(self).model_validate(merged)
        for name in changes:
            self.__dict__[name] = getattr(checked, name)
        self.__pydantic_fields_set__.update(changes)


def validation_message(exc: ValidationError, got: Any = None) -> str:
    """One line for the first error: ``field: why (got value)``; a rule of the whole model
    names its key itself. ``got`` replaces the value shown (the text an operator typed)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid value"))
    if not loc:
        return msg.removeprefix("Value error, ")
    shown = err.get("input") if got is None else got
    return f"{loc}: {msg} (got {shown!r})"


class ReconcileConfig(CheckedModel):
    """Every knob of detection, routing, gates and budget, with its default."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    # Passive reconciliation
    enabled: StrictBool = True
    symbols: list[str] = Field(default_factory=list)
    order_grace_ms: NonNegInt = 5000
    position_grace_ms: NonNegInt = 3000
    triage_query_budget: NonNegInt = 10
    triage_miss_threshold: PosInt = 3

    # Identity
    client_order_id_prefix: str = DEFAULT_PREFIX
    strategy_id: str = DEFAULT_STRATEGY_ID
    strategy_allowlist: list[str] | None = None

    # Remediation gates
    action: RemediationAction = RemediationAction.NONE
    dry_run: StrictBool = True
    allow_active_remediation: StrictBool = False
    cooldown_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)] = 60.0
    require_whitelist: StrictBool = True
    symbol_whitelist: list[str] = Field(default_factory=list)
    max_flatten_notional_usdt: NonNegDecimal = Decimal("500")
    max_orders_per_action: NonNegInt = 10
    max_symbols_per_action: NonNegInt = 3
    # A flatten is a reduce-only MARKET order; with a bound, a reduce-only IOC LIMIT at
    # the mark price this many basis points worse, at most (D63).
    flatten_max_slippage_bps: (
        Annotated[Decimal, Field(gt=0, le=MAX_FLATTEN_SLIPPAGE_BPS, allow_inf_nan=False)] | None
    ) = None
    # Gate E: the bot's expected state counts only while a bot keeps writing it (D45).
    expected_heartbeat_max_age_s: Annotated[
        float, Field(gt=0, le=MAX_EXPECTED_HEARTBEAT_AGE_S, allow_inf_nan=False, strict=True)
    ] = 60.0

    # Budget
    max_calls_per_run: NonNegInt = 10
    max_notional_per_run: NonNegDecimal = Decimal("1000")
    max_calls_per_day: NonNegInt = 100
    max_notional_per_day: NonNegDecimal = Decimal("5000")

    @field_validator("client_order_id_prefix")
    @classmethod
    def _prefix_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _identity_rules(self) -> ReconcileConfig:
        """The identity can never make an exchange-generated id ours, and every id
        remediation may produce fits Binance and parses back (``check_identity``)."""
        if self.symbol_whitelist:
            symbols, key = self.symbol_whitelist, "symbol_whitelist"
        elif not self.require_whitelist:
            symbols, key = self.symbols, "symbols"  # no whitelist: any symbol in scope
        else:
            symbols, key = [], "symbol_whitelist"  # an empty required whitelist: none
        check_identity(
            self.client_order_id_prefix,
            self.strategy_id,
            symbols=symbols,
            symbols_key=key,
            strategy_allowlist=self.strategy_allowlist,
        )
        return self

    @property
    def allowed_strategies(self) -> frozenset[str]:
        if self.strategy_allowlist is None:
            return frozenset({self.strategy_id})
        return frozenset(self.strategy_allowlist)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str) -> ReconcileConfig:
        """Validate a mapping (a TOML table), raising ``ConfigError`` naming ``source``."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(f"{source}: {validation_message(exc)}") from None

    @classmethod
    def from_toml(cls, path: Path) -> ReconcileConfig:
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
        return cls.from_mapping(table, source=str(path))

    def summary(self) -> dict[str, Any]:
        """A flat, printable view (Decimals as strings)."""
        out = self.model_dump()
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in out.items()}


MAX_SECONDS = 1e9
"""Upper bound of every number of seconds given (about 31 years): no deadline overflows a
clock."""


def seconds_problem(number: float, *, allow_zero: bool = False) -> str | None:
    """Why ``number`` is no number of seconds -- finite, > 0 (>= 0 with ``allow_zero``),
    at most ``MAX_SECONDS`` -- or None when it is one."""
    low = ">= 0" if allow_zero else "> 0"
    if (
        not math.isfinite(number)
        or number > MAX_SECONDS
        or number < 0
        or (number == 0 and not allow_zero)
    ):
        return f"expected a finite number of seconds {low} and <= {MAX_SECONDS:.0f}"
    return None


# --- Environment -------------------------------------------------------------------------


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
