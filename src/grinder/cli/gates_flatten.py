"""``grinder gates --position``: the notional of the flatten to explain, and where it came from.

What is not given comes from the service (control ``/position``): the quantity is its
observed position of the symbol (``--position-side`` picks a side in hedge mode), rounded
down to the market step as a flatten would send it, the price its mark price read from
its venue as a flatten reads it. ``--notional``, ``--qty``, ``--price`` and
``--venue-url`` win.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from grinder.ceremony.sources import SourceError, fetch_mark_price
from grinder.cli.control import call
from grinder.cli.errors import UsageError
from grinder.redaction import mask_url


def decimal_option(option: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise UsageError(f"{option}: expected a number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise UsageError(f"{option}: expected a number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class FlattenAsked:
    """The flatten to explain: its notional (None: no mark price) and where it came from."""

    notional: Decimal | None
    text: str
    side: str | None = None
    notes: tuple[str, ...] = ()


class ServicePosition:
    """The service's ``/position`` answer for one symbol, asked once, when first needed."""

    def __init__(self, socket: Path, symbol: str) -> None:
        self.socket = socket
        self.symbol = symbol
        self._answer: dict[str, Any] | None = None
        self._error: str | None = None

    def get(self) -> tuple[dict[str, Any] | None, str | None]:
        if self._answer is None and self._error is None:
            route = "/position?" + urllib.parse.urlencode({"symbol": self.symbol})
            try:
                answer = call(str(self.socket), "GET", route)
            except UsageError as exc:
                self._error = exc.format_message()
            else:
                if isinstance(answer, dict) and isinstance(answer.get("positions"), list):
                    self._answer = answer
                else:
                    self._error = f"control {route}: unexpected answer"
        return self._answer, self._error

    def need(self, why: str) -> dict[str, Any]:
        """The answer, or a one-line ``UsageError``: ``why`` and what went wrong asking."""
        answer, error = self.get()
        if answer is None:
            raise UsageError(f"{why} ({error})")
        return answer


def _pick_side(
    symbol: str, positions: list[dict[str, Any]], side: str | None
) -> tuple[str | None, Decimal]:
    """The side to flatten and its quantity, from the service's positions of ``symbol``."""
    held = {str(p.get("position_side")): Decimal(str(p.get("qty", "0"))) for p in positions}
    if side is not None:
        return side, held.get(side, Decimal(0))
    if len(held) > 1:
        *others, last = sorted(held)
        raise UsageError(
            f"--position: the service holds {symbol} {', '.join(others)} and {last} positions "
            f"(hedge mode): give --position-side {' or '.join(sorted(held))}"
        )
    if not held:
        return None, Decimal(0)
    ((only, qty),) = held.items()
    return only, qty


@dataclass(frozen=True, slots=True)
class _Quantity:
    """The quantity to flatten, where it came from, its side, and what to note about it."""

    amount: Decimal
    source: str
    side: str | None
    notes: tuple[str, ...]


def _service_quantity(symbol: str, side: str | None, service: ServicePosition) -> _Quantity:
    """The service's observed position of ``symbol``, rounded down to the market step."""
    answer = service.need(
        "--position needs --notional, or --qty with --price or --venue-url: "
        "the service does not report its position"
    )
    if answer.get("snapshot_age_s") is None:
        raise UsageError(
            f"--position: the service has no snapshot yet, so its {symbol} position is not "
            "known; try again in a moment, or give --qty"
        )
    side, amount = _pick_side(symbol, answer["positions"], side)
    source = "the service's observed position"
    step = answer.get("step_size")
    if step is not None and Decimal(str(step)) > 0:
        # What a flatten would send: the quantity rounded down to the market step.
        unit = Decimal(str(step))
        rounded = (abs(amount) / unit).to_integral_value(rounding=ROUND_DOWN) * unit
        if rounded != abs(amount):
            source += f", {abs(amount)} rounded down to the step {unit}"
        amount = rounded if amount >= 0 else -rounded
    notes: tuple[str, ...] = ()
    if amount == 0:
        notes = (
            f"the service sees no {symbol} position{f' {side}' if side else ''}: "
            "a flatten would be skipped (already_resolved); the chain is shown for notional 0",
        )
    return _Quantity(amount, source, side, notes)


def flatten_asked(
    symbol: str,
    notional: str | None,
    qty: str | None,
    price: str | None,
    venue_url: str | None,
    side: str | None,
    service: ServicePosition,
) -> FlattenAsked:
    """The flatten's notional from the options, else from the service (see the module doc)."""
    given = decimal_option("--notional", notional)
    if given is not None:
        if qty is not None or price is not None:
            raise UsageError("--notional: give either --notional or --qty with a price")
        return FlattenAsked(given, f"notional {given} USDT (--notional)", side)
    amount = decimal_option("--qty", qty)
    held = (
        _Quantity(amount, "--qty", side, ())
        if amount is not None
        else _service_quantity(symbol, side, service)
    )
    side, notes = held.side, held.notes
    mark = decimal_option("--price", price)
    where = "--price"
    if mark is None and venue_url is not None:
        try:
            mark = fetch_mark_price(venue_url, symbol)
        except SourceError as exc:
            why = f"no mark price ({exc}): gate 9 blocks with price_unavailable"
            return FlattenAsked(None, why, side, notes)
        where = f"mark price from {mask_url(venue_url)}"
    if mark is None:
        answer = service.need(
            "--qty needs --price or --venue-url (to read the mark price): "
            "the service does not report one"
        )
        raw = answer.get("mark_price")
        if raw is None:
            why = answer.get("mark_price_error") or "none given"
            text = f"no mark price from the service ({why}): gate 9 blocks with price_unavailable"
            return FlattenAsked(None, text, side, notes)
        mark = Decimal(str(raw))
        where = f"mark price from the service's venue {answer.get('venue')}"
    if held.source != "--qty":
        where = f"{held.source}; {where}"
    value = abs(held.amount) * mark
    text = f"notional {value} USDT = |{held.amount}| x {mark} ({where})"
    return FlattenAsked(value, text, side, notes)
