"""Client order ids: generation, parsing and the "is this order ours" check.

Format: ``{prefix}{strategy_id}_{symbol}_{level_id}_{ts_seconds}_{seq}``, e.g.
``grinder_d_BTCUSDT_1_1704067200_1``. Binance accepts at most 36 characters
matching ``[.A-Z:/a-z0-9_-]{1,36}``; generation never exceeds that and never
truncates: it raises instead.

Strategy ids and level ids are alphanumeric (no ``_``), so a symbol that itself
contains ``_`` (delivery contracts such as ``BTCUSDT_220325``) still parses.
Orders placed by remediation use the level id ``R``.

``check_identity`` is the one home of the rules a configuration's identity must
keep (the config's validation calls it at start, on reload and on every control
change): the prefix never overlaps an id family the exchange or its own apps
generate, and every id remediation can produce fits Binance's 36 characters and
parses back to the same strategy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

MAX_CLIENT_ORDER_ID_LEN = 36
DEFAULT_PREFIX = "grinder_"
DEFAULT_STRATEGY_ID = "d"
REMEDIATION_LEVEL_ID = "R"
REMEDIATION_SEQ_MAX = 999
"""Remediation's sequence cycles 1..999 within a process, so its ids have a longest form
(with ``ts_seconds``, it stays unique: 999 flattens never fit in one second)."""
TS_SECONDS_MAX = 9_999_999_999
"""The longest ``ts_seconds`` (10 digits, until the year 2286)."""
REFERENCE_SYMBOL = "BTCUSDT"
"""The symbol every configuration must be able to flatten, whatever it lists."""

EXCHANGE_ID_FAMILIES: tuple[tuple[str, str], ...] = (
    ("autoclose-", "liquidation"),
    ("adl_autoclose", "auto-deleveraging (ADL)"),
    ("settlement_autoclose-", "settlement"),
    ("delivery_autoclose-", "delivery"),
    ("web_", "manual orders from the Binance web app"),
    ("ios_", "manual orders from the Binance iOS app"),
    ("android_", "manual orders from the Binance Android app"),
    ("electron_", "manual orders from the Binance desktop app"),
)
"""Client order ids the exchange generates, or its own apps give manual orders: never ours."""

# fullmatch everywhere: "$" would accept a trailing newline.
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_BINANCE_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")


class ClientOrderIdError(ValueError):
    """A client order id cannot be generated as asked."""


class IdentityRuleError(ValueError):
    """A configuration's identity breaks a rule; ``key`` is the setting at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


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


def id_family(client_order_id: str) -> str | None:
    """The exchange id family (its stem in ``EXCHANGE_ID_FAMILIES``) an id belongs to, if any."""
    for stem, _what in EXCHANGE_ID_FAMILIES:
        if client_order_id.startswith(stem):
            return stem
    return None


def exchange_family(prefix: str) -> tuple[str, str] | None:
    """The exchange id family ``prefix`` overlaps, if any: one starts with the other, so
    an id of that family could start with the prefix, or ours would look like the family's."""
    for stem, what in EXCHANGE_ID_FAMILIES:
        if stem.startswith(prefix) or prefix.startswith(stem):
            return stem, what
    return None


def check_identity(
    prefix: str,
    strategy_id: str,
    *,
    symbols: Iterable[str] = (),
    symbols_key: str = "symbol_whitelist",
    strategy_allowlist: Iterable[str] | None = None,
) -> None:
    """Raise ``IdentityRuleError`` naming the setting when the identity is unsafe or unusable.

    * ``prefix`` must not overlap an exchange id family (``EXCHANGE_ID_FAMILIES``);
    * the longest id remediation can produce -- the longest of ``symbols`` (those remediation
      may act on) and ``REFERENCE_SYMBOL``, ``TS_SECONDS_MAX``, ``REMEDIATION_SEQ_MAX`` -- must
      be a valid Binance id of at most 36 characters that parses back to ``strategy_id``
      (``symbols_key`` names where ``symbols`` came from);
    * every ``strategy_allowlist`` entry must be a strategy id an id of ours can carry.
    """
    if not prefix:
        raise IdentityRuleError("client_order_id_prefix", "must not be empty")
    family = exchange_family(prefix)
    if family is not None:
        stem, what = family
        raise IdentityRuleError(
            "client_order_id_prefix",
            f"{prefix!r} overlaps the exchange's {what} ids ({stem}...), which are never "
            "ours; choose a prefix that neither starts them nor starts with them",
        )
    if not _TOKEN.fullmatch(strategy_id):
        raise IdentityRuleError(
            "strategy_id",
            f"{strategy_id!r} must be letters and digits only (no '_', which separates the "
            "fields of a client order id)",
        )
    for entry in strategy_allowlist or ():
        if not _TOKEN.fullmatch(entry):
            raise IdentityRuleError(
                "strategy_allowlist",
                f"{entry!r} can never match an id of ours: strategy ids are letters and digits",
            )
    listed = [s for s in symbols if _SYMBOL.fullmatch(s)]
    _check_round_trip(prefix, strategy_id, REFERENCE_SYMBOL, "strategy_id")
    if listed:
        _check_round_trip(prefix, strategy_id, max(listed, key=len), symbols_key)


def _check_round_trip(prefix: str, strategy_id: str, symbol: str, key: str) -> None:
    longest = f"{prefix}{strategy_id}_{symbol}_{REMEDIATION_LEVEL_ID}_{TS_SECONDS_MAX}_"
    longest += str(REMEDIATION_SEQ_MAX)
    try:
        cid = remediation_client_order_id(
            strategy_id=strategy_id,
            symbol=symbol,
            ts_seconds=TS_SECONDS_MAX,
            seq=REMEDIATION_SEQ_MAX,
            prefix=prefix,
        )
    except ClientOrderIdError:
        if len(longest) > MAX_CLIENT_ORDER_ID_LEN:
            raise IdentityRuleError(
                key,
                f"remediation ids for {symbol} would be up to {len(longest)} characters "
                f"({longest}), over Binance's {MAX_CLIENT_ORDER_ID_LEN}; shorten "
                f"client_order_id_prefix {prefix!r} or strategy_id {strategy_id!r}",
            ) from None
        raise IdentityRuleError(
            "client_order_id_prefix",
            f"{prefix!r} has characters Binance refuses in a client order id "
            "(allowed: letters, digits and . : / _ -)",
        ) from None
    parsed = parse_client_order_id(cid, prefix)
    if parsed is None or parsed.strategy_id != strategy_id or parsed.symbol != symbol:
        raise IdentityRuleError(
            key, f"{cid} does not parse back to strategy {strategy_id!r} and symbol {symbol}"
        )
