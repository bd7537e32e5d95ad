"""Reconciliation and remediation configuration, and strict environment parsing.

``ReconcileConfig`` is a live object: assignments are validated, and the
executor reads it at every gate evaluation, so ``config.action =
RemediationAction.NONE`` or ``config.dry_run = True`` takes effect before the
next exchange write. Defaults are the safe end of the operator ceremony.
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

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from grinder.reconcile.identity import DEFAULT_PREFIX, DEFAULT_STRATEGY_ID


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


class ReconcileConfig(BaseModel):
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
    # Gate E: the bot's expected state counts only while a bot keeps writing it (D45).
    expected_heartbeat_max_age_s: Annotated[
        float, Field(gt=0, allow_inf_nan=False, strict=True)
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
            raise ConfigError(f"{source}: {_first_error(exc)}") from None

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


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "config"
    return f"{where}: {err.get('msg', 'invalid value')} (got {err.get('input')!r})"


# --- Environment -------------------------------------------------------------------------


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``0`` or ``1``; unset means ``default``; anything else is a ``ConfigError``."""
    raw = env.get(name)
    if raw is None:
        return default
    if raw == "1":
        return True
    if raw == "0":
        return False
    raise ConfigError(f"{name}: expected '0' or '1', got {raw!r}")


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
    if raw is None:
        return None
    if not raw.strip():
        raise ConfigError(
            f"{name}: expected a value, got an empty value (unset it for the default)"
        )
    return raw


def env_path(env: Mapping[str, str], name: str, default: Path | None) -> Path | None:
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.strip():
        raise ConfigError(f"{name}: expected a path, got an empty value")
    return Path(raw)


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
