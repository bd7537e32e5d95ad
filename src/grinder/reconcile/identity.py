"""Client order ids: generation, parsing and the "is this order ours" check.

Format: ``{prefix}{strategy_id}_{symbol}_{level_id}_{ts_seconds}_{seq}``, e.g.
``grinder_d_BTCUSDT_1_1704067200_1``. Binance accepts at most 36 characters
matching ``[.A-Z:/a-z0-9_-]{1,36}``; generation never exceeds that and never
truncates: it raises instead.

Strategy ids and level ids are alphanumeric (no ``_``), so a symbol that itself
contains ``_`` (delivery contracts such as ``BTCUSDT_220325``) still parses.
Orders placed by remediation use the level id ``R``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

MAX_CLIENT_ORDER_ID_LEN = 36
DEFAULT_PREFIX = "grinder_"
DEFAULT_STRATEGY_ID = "d"
REMEDIATION_LEVEL_ID = "R"

# fullmatch everywhere: "$" would accept a trailing newline.
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_BINANCE_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")


class ClientOrderIdError(ValueError):
    """A client order id cannot be generated as asked."""


@dataclass(frozen=True, slots=True)
class ParsedClientOrderId:
    prefix: str
    strategy_id: str
    symbol: str
    level_id: str
    ts_seconds: int
    seq: int

    @property
    def is_remediation(self) -> bool:
        return self.level_id == REMEDIATION_LEVEL_ID


class Ownership(StrEnum):
    """Why an order is or is not ours; the refusals are block reasons."""

    OURS = "ours"
    NO_GRINDER_PREFIX = "no_grinder_prefix"
    STRATEGY_NOT_ALLOWED = "strategy_not_allowed"


def generate_client_order_id(
    *,
    strategy_id: str,
    symbol: str,
    level_id: str | int,
    ts_seconds: int,
    seq: int,
    prefix: str = DEFAULT_PREFIX,
) -> str:
    """Build a client order id, or raise ``ClientOrderIdError`` naming the problem."""
    level = str(level_id)
    if not prefix:
        raise ClientOrderIdError("prefix must not be empty: an id without it is never ours")
    if not _TOKEN.fullmatch(strategy_id):
        raise ClientOrderIdError(f"strategy_id {strategy_id!r} must be alphanumeric")
    if not _TOKEN.fullmatch(level):
        raise ClientOrderIdError(f"level_id {level!r} must be alphanumeric")
    if not _SYMBOL.fullmatch(symbol):
        raise ClientOrderIdError(f"symbol {symbol!r} is not a Binance symbol")
    if ts_seconds < 0 or seq < 0:
        raise ClientOrderIdError("ts_seconds and seq must be non-negative")
    cid = f"{prefix}{strategy_id}_{symbol}_{level}_{ts_seconds}_{seq}"
    if len(cid) > MAX_CLIENT_ORDER_ID_LEN:
        raise ClientOrderIdError(
            f"client order id {cid!r} is {len(cid)} characters, over Binance's "
            f"{MAX_CLIENT_ORDER_ID_LEN}; use a shorter prefix or strategy id"
        )
    if not _BINANCE_ID.fullmatch(cid):
        raise ClientOrderIdError(f"client order id {cid!r} has characters Binance refuses")
    return cid


def remediation_client_order_id(
    *, strategy_id: str, symbol: str, ts_seconds: int, seq: int, prefix: str = DEFAULT_PREFIX
) -> str:
    """The id of an order placed by remediation itself (ours, level ``R``)."""
    return generate_client_order_id(
        strategy_id=strategy_id,
        symbol=symbol,
        level_id=REMEDIATION_LEVEL_ID,
        ts_seconds=ts_seconds,
        seq=seq,
        prefix=prefix,
    )


@lru_cache(maxsize=131072)
def parse_client_order_id(
    client_order_id: str, prefix: str = DEFAULT_PREFIX
) -> ParsedClientOrderId | None:
    """Parse an id of our format; ``None`` for anything else (manual, liquidation, ...)."""
    if not prefix or not client_order_id.startswith(prefix):
        return None
    rest = client_order_id[len(prefix) :]
    strategy_id, sep, tail = rest.partition("_")
    if not sep:
        return None
    parts = tail.rsplit("_", 3)
    if len(parts) != 4:
        return None
    symbol, level_id, ts_text, seq_text = parts
    if not (
        _TOKEN.fullmatch(strategy_id)
        and _SYMBOL.fullmatch(symbol)
        and _TOKEN.fullmatch(level_id)
        and ts_text.isascii()
        and ts_text.isdigit()
        and seq_text.isascii()
        and seq_text.isdigit()
    ):
        return None
    return ParsedClientOrderId(
        prefix=prefix,
        strategy_id=strategy_id,
        symbol=symbol,
        level_id=level_id,
        ts_seconds=int(ts_text),
        seq=int(seq_text),
    )


def ownership(
    client_order_id: str | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    strategy_allowlist: frozenset[str] = frozenset({DEFAULT_STRATEGY_ID}),
) -> Ownership:
    """Is this order ours? Liquidation, ADL, settlement and foreign ids never are."""
    if not client_order_id:
        return Ownership.NO_GRINDER_PREFIX
    parsed = parse_client_order_id(client_order_id, prefix)
    if parsed is None:
        return Ownership.NO_GRINDER_PREFIX
    if parsed.strategy_id not in strategy_allowlist:
        return Ownership.STRATEGY_NOT_ALLOWED
    return Ownership.OURS


def is_ours(
    client_order_id: str | None,
    *,
    prefix: str = DEFAULT_PREFIX,
    strategy_allowlist: frozenset[str] = frozenset({DEFAULT_STRATEGY_ID}),
) -> bool:
    return (
        ownership(client_order_id, prefix=prefix, strategy_allowlist=strategy_allowlist)
        is Ownership.OURS
    )
