"""The exchange port: everything reconciliation and remediation ask of a venue.

The Binance USDⓈ-M adapter implements it over REST; ``FakePort`` implements it
in memory for tests and the smoke harness. All calls are async. Errors are
``ExchangeError`` subclasses; "not found" on a query is ``None``, and a cancel
of an order that is already gone returns ``CancelOutcome.ALREADY_GONE``.

**Writes are authorized at the wire.** The writes (``cancel_order``,
``place_reduce_only_market``, ``place_reduce_only_ioc``) take an ``authorize`` callable.
A port calls it once,
synchronously, immediately before the request leaves (after any wait of its own), and
never sends the request again by itself. It returns how many milliseconds the request
may take to reach the exchange: the Binance adapter sends it as ``recvWindow``, so a
request held up for longer (a paused process, a stalled network) is refused by the
exchange instead of executed late. It raises ``WriteWithheld`` when the write must
not go out; nothing was sent then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Protocol

from grinder.reconcile.trades import AccountTrade
from grinder.reconcile.types import ObservedOrder, ObservedPosition, PositionSide, Side


class ExchangeError(Exception):
    """The venue refused or failed a request. ``code`` is Binance's error code if any.

    ``outcome_unknown``: the request may have been executed (a timed-out write, an
    unreadable answer to one). ``sent``: whether the request left at all.
    ``repeatable``: the same write may be sent again after this failure -- by the
    remediation executor, which re-authorizes every attempt (``WriteWithheld``) and
    bounds their number; a port never repeats a write itself.
    """

    outcome_unknown: ClassVar[bool] = False
    repeatable: ClassVar[bool] = False
    sent: bool = True
    """False when the request never left (refused by the client itself: a 429 pause or
    a 418 ban still running, no credentials)."""

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (code {self.code})" if self.code is not None else base


class TransientExchangeError(ExchangeError):
    """A failure that may succeed on retry (timeout, 5xx, rate limit)."""

    repeatable: ClassVar[bool] = True


class WriteWithheld(Exception):
    """A write was not sent: its authorization at the wire failed.

    ``reason`` is a stable label (a block or skip reason of the executor). Not an
    ``ExchangeError``: nothing reached the exchange.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


Authorize = Callable[[], int]
"""Called right before a write leaves: the milliseconds it may take to reach the exchange
(its ``recvWindow``), or ``WriteWithheld`` raised when it must not be sent."""


class CancelOutcome(StrEnum):
    CANCELED = "canceled"
    ALREADY_GONE = "already_gone"


class ExchangePort(Protocol):
    """What the reconciler needs from an exchange."""

    async def fetch_open_orders(self, symbols: Sequence[str] | None = None) -> list[ObservedOrder]:
        """Open orders (regular and conditional) for ``symbols``, or for all symbols."""
        ...

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[ObservedPosition]:
        """Positions for ``symbols``, or every position the account holds."""
        ...

    async def query_order(
        self, symbol: str, client_order_id: str, *, is_algo: bool = False
    ) -> ObservedOrder | None:
        """One order by client order id (on the algo endpoint when ``is_algo``);
        ``None`` when the venue does not know it."""
        ...

    async def cancel_order(
        self,
        symbol: str,
        client_order_id: str,
        *,
        is_algo: bool = False,
        authorize: Authorize | None = None,
    ) -> CancelOutcome:
        """Cancel by client order id on the endpoint the order lives on (one request)."""
        ...

    async def place_reduce_only_market(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        *,
        position_side: PositionSide,
        client_order_id: str,
        authorize: Authorize | None = None,
    ) -> ObservedOrder:
        """A reduce-only MARKET order (``positionSide`` sent in hedge mode; one request)."""
        ...

    async def place_reduce_only_ioc(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        position_side: PositionSide,
        client_order_id: str,
        authorize: Authorize | None = None,
    ) -> ObservedOrder:
        """A reduce-only IOC LIMIT order at ``price`` (a bounded flatten; one request): what
        the book offers within the price fills, the rest expires."""
        ...

    async def fetch_user_trades(
        self, symbol: str, *, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[AccountTrade]:
        """The account's trades of ``symbol`` in ``[start_ms, end_ms]`` (at most 7 days),
        the oldest first, at most ``limit`` (≤ 1000)."""
        ...

    async def get_mark_price(self, symbol: str) -> Decimal | None:
        """The venue's mark price, or ``None`` when it has none."""
        ...

    async def get_tick_size(self, symbol: str) -> Decimal | None:
        """The symbol's price tick from its PRICE_FILTER, if known."""
        ...

    async def get_step_size(self, symbol: str) -> Decimal | None:
        """The symbol's quantity step size from its LOT_SIZE filter, if known."""
        ...


class CountdownPort(Protocol):
    """A venue with a dead-man countdown per symbol (Binance's ``countdownCancelAll``)."""

    async def countdown_cancel_all(
        self, symbol: str, countdown_ms: int, *, authorize: Authorize | None = None
    ) -> int:
        """Set the countdown of ``symbol`` (0 stops it; one request, authorized at the wire);
        when it ends unrenewed the venue cancels the symbol's open orders. Returns the
        countdown the venue set."""
        ...
