"""Reconciliation and remediation configuration: the settings and their rules (pure).

``ReconcileConfig`` is a live object: assignments are validated, and the
executor reads it at every gate evaluation, so ``config.action =
RemediationAction.NONE`` or ``config.dry_run = True`` takes effect before the
next exchange write. Defaults are the safe end of the operator ceremony.

Every change is checked on the whole configuration it would make (``CheckedModel``):
the field rules and the rules that tie fields together (the identity rules of
``grinder.reconcile.identity.check_identity``), at start, on reload and on every
control change alike; a change that fails leaves the live object as it was.

Reading them -- a TOML file, the environment -- is the shell's: ``grinder.config_sources``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

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
