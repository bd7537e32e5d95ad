"""The API a trading bot calls to tell GRINDER what it expects.

A bot in another process records every order it places and every position it
intends to hold; the reconcile service reads the same SQLite file
(``SqliteExpectedStore(path, readonly=True)``) and compares it with the exchange::

    from decimal import Decimal
    from grinder.state.recorder import ExpectedRecorder

    with ExpectedRecorder("/var/lib/grinder/expected.db") as rec:
        rec.order_placed(cid, "BTCUSDT", "BUY", "0.010", "42000.5")  # BEFORE sending
        send_order(cid, ...)
        ...
        rec.cancel_sent(cid)                 # when the cancel request goes out
        rec.order_filled(cid)                # when the bot books the fill
        rec.position_intended("BTCUSDT", Decimal("0.010"))
        ...
        rec.heartbeat()                      # from the main loop, every 10 s

**Ordering rule: record before you send.** ``order_placed`` must return before the
order request leaves; if the bot crashes in between, the service sees an
expected order that never reached the exchange (reported as missing, alert
only) -- never a live order nobody recorded (which remediation would cancel as
unexpected). Likewise call ``cancel_sent`` before sending the cancel.

**Heartbeat: the service trusts the file only while a bot writes it.** Every call
stamps the bot heartbeat (``meta.bot_heartbeat_ms``, the recorder's clock);
``heartbeat()`` stamps it alone. Call ``heartbeat()`` from the bot's main loop
every ``RECOMMENDED_HEARTBEAT_INTERVAL_S`` (10 s) -- from the loop itself, not a
timer thread, so that a bot that hangs stops beating. When the last stamp is
older than the service's ``expected_heartbeat_max_age_s`` (60 s by default), or
there is none, the service still detects and reports but remediates nothing
(``expected_state_stale``): an abandoned file would make every order of the bot
look unexpected.

Every call is one durable transaction (WAL, ``synchronous=FULL``: about 0.2 ms
on an SSD). ``batch()`` groups several calls into one transaction, e.g. booking
a fill and the new intended position together so the service never sees one
without the other.

Quantities and prices are ``str``, ``Decimal`` or ``int`` -- never ``float``
(money is never float; a float raises ``TypeError``). Bad arguments raise
``ValueError``/``TypeError`` with a one-line message; unknown client order ids
raise ``UnknownOrder`` (a ``KeyError``); an unusable database raises
``ExpectedStoreError``; a store full of open orders raises ``ExpectedStoreFull``.

Thread safety: a recorder may be shared by threads (and called through
``asyncio.to_thread``); every call holds an internal lock, so calls are
serialised. Calls block for one commit -- in an asyncio bot, either accept that
(~0.2 ms) or run them in a thread. Several processes may each open their own
recorder on one file: SQLite serialises their writes. Do not share a recorder
across ``fork()``.

Housekeeping: ended orders are kept ``terminal_ttl_ms`` (1 h) to explain late
exchange reports; the recorder evicts expired ones at most once per
``evict_interval_ms`` (60 s), during ``order_placed``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from grinder.clock import Clock, wall_clock_ms
from grinder.reconcile.types import ExpectedOrder, OrderStatus, PositionSide, Side
from grinder.state.expected import (
    DEFAULT_MAX_ORDERS,
    DEFAULT_TERMINAL_TTL_MS,
    RECOMMENDED_HEARTBEAT_INTERVAL_S,
    Closing,
)
from grinder.state.sqlite import ExpectedStoreError, SqliteExpectedStore, Synchronous

__all__ = ["RECOMMENDED_HEARTBEAT_INTERVAL_S", "Amount", "ExpectedRecorder"]

Amount = str | Decimal | int
"""A quantity or price: str, Decimal or int. Never float."""

DEFAULT_EVICT_INTERVAL_MS = 60_000

_CLIENT_ORDER_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9_]{0,31}")
_ORDER_TYPE = re.compile(r"[A-Z][A-Z_]{0,31}")


class ExpectedRecorder(Closing):
    """Records a bot's orders and intended positions in a SQLite expected-state file.

    ``clock`` returns the current time in integer milliseconds since the Unix
    epoch (default: the wall clock).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        max_orders: int = DEFAULT_MAX_ORDERS,
        terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS,
        evict_interval_ms: int = DEFAULT_EVICT_INTERVAL_MS,
        synchronous: Synchronous = "FULL",
    ) -> None:
        self._clock = clock or wall_clock_ms
        self._lock = threading.RLock()
        self._evict_interval_ms = evict_interval_ms
        self._last_evict_ms: int | None = None
        self._store = SqliteExpectedStore(
            path,
            max_orders=max_orders,
            terminal_ttl_ms=terminal_ttl_ms,
            synchronous=synchronous,
            heartbeat_clock=self._clock,
        )
        self._closed = False

    @property
    def store(self) -> SqliteExpectedStore:
        """The underlying store (read it; write through the recorder)."""
        return self._store

    # --- orders --------------------------------------------------------------------------

    def order_placed(
        self,
        client_order_id: str,
        symbol: str,
        side: Side | str,
        qty: Amount,
        price: Amount | None = None,
        *,
        order_type: str = "LIMIT",
        position_side: PositionSide | str = "BOTH",
        is_algo: bool = False,
    ) -> None:
        """Record an order the bot is about to send. Call it BEFORE sending.

        Recording the same open order again with the same parameters is a no-op
        (a retried send); with different parameters it is a ``ValueError``. An id
        whose previous order has ended may be used again.
        """
        cid = _client_order_id(client_order_id)
        sym = _symbol(symbol)
        side_v = _enum(Side, side, "side")
        qty_v = _amount("qty", qty, positive=True)
        price_v = None if price is None else _amount("price", price, positive=True)
        if not isinstance(order_type, str) or not _ORDER_TYPE.fullmatch(order_type.upper()):
            raise ValueError(f"order_type {order_type!r} is not a Binance order type")
        otype = order_type.upper()
        if otype == "LIMIT" and price_v is None:
            raise ValueError(f"order {cid}: a LIMIT order needs a price")
        pside = _enum(PositionSide, position_side, "position_side")
        if not isinstance(is_algo, bool):
            raise TypeError(f"is_algo must be a bool, not {type(is_algo).__name__}")
        with self._lock:
            self._require_open()
            now = self._clock()
            current = self._store.read_order(cid)
            if current is not None and current.expected_open:
                same = (
                    current.symbol,
                    current.side,
                    current.qty,
                    current.price,
                    current.order_type,
                    current.position_side,
                    current.is_algo,
                ) == (sym, side_v, qty_v, price_v, otype, pside, is_algo)
                if same:
                    self._store.heartbeat(now)  # nothing to record, but the bot is alive
                    return
                raise ValueError(
                    f"order {cid} is already recorded as open with different parameters"
                )
            self._maybe_evict(now)
            self._store.record_order(
                ExpectedOrder(
                    client_order_id=cid,
                    symbol=sym,
                    side=side_v,
                    qty=qty_v,
                    price=price_v,
                    order_type=otype,
                    position_side=pside,
                    created_ts_ms=now,
                    updated_ts_ms=now,
                    is_algo=is_algo,
                )
            )

    def cancel_sent(self, client_order_id: str) -> None:
        """The bot is sending a cancel: from now on it expects the order gone."""
        cid = _client_order_id(client_order_id)
        with self._lock:
            self._require_open()
            self._store.mark_cancel_requested(cid, self._clock())

    def order_filled(self, client_order_id: str) -> None:
        """The bot booked the order as completely filled."""
        self.order_ended(client_order_id, OrderStatus.FILLED)

    def order_ended(self, client_order_id: str, status: OrderStatus | str) -> None:
        """The bot saw the order end: FILLED, CANCELED, EXPIRED, EXPIRED_IN_MATCH, REJECTED."""
        cid = _client_order_id(client_order_id)
        st = _enum(OrderStatus, status, "status")
        if not st.is_terminal:
            terminal = ", ".join(s.value for s in OrderStatus if s.is_terminal)
            raise ValueError(f"status {st.value} is not terminal; expected one of {terminal}")
        with self._lock:
            self._require_open()
            self._store.mark_status(cid, st, self._clock())

    # --- positions -----------------------------------------------------------------------

    def position_intended(
        self, symbol: str, qty: Amount, position_side: PositionSide | str = "BOTH"
    ) -> None:
        """The position the bot now intends to hold: signed (short < 0), 0 for flat.

        In hedge mode a LONG position is >= 0 and a SHORT one <= 0, as Binance reports.
        """
        sym = _symbol(symbol)
        qty_v = _amount("qty", qty, positive=False)
        pside = _enum(PositionSide, position_side, "position_side")
        if (pside is PositionSide.LONG and qty_v < 0) or (
            pside is PositionSide.SHORT and qty_v > 0
        ):
            raise ValueError(
                f"a {pside.value} position of {sym} cannot be {qty_v}: LONG is >= 0, SHORT <= 0"
            )
        with self._lock:
            self._require_open()
            self._store.set_position(sym, qty_v, self._clock(), pside)

    # --- liveness ------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """The bot is running: stamp the heartbeat (every other call does too). Call it
        from the bot's main loop every ``RECOMMENDED_HEARTBEAT_INTERVAL_S`` seconds."""
        with self._lock:
            self._require_open()
            self._store.heartbeat(self._clock())

    # --- grouping and lifetime -----------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[ExpectedRecorder]:
        """Several calls as one transaction: all recorded, or (on an exception) none."""
        with self._lock:
            self._require_open()
            with self._store.batch():
                yield self

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    # --- internals -----------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise ExpectedStoreError(f"expected recorder for {self._store.path} is closed")

    def _maybe_evict(self, now: int) -> None:
        last = self._last_evict_ms
        if last is None or now - last >= self._evict_interval_ms or now < last:
            self._store.evict_expired(now)
            self._last_evict_ms = now


def _client_order_id(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"client_order_id must be a str, not {type(value).__name__}")
    if not _CLIENT_ORDER_ID.fullmatch(value):
        raise ValueError(
            f"client_order_id {value!r} is not a Binance client order id "
            "(1-36 characters of [.A-Z:/a-z0-9_-])"
        )
    return value


def _symbol(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"symbol must be a str, not {type(value).__name__}")
    if not _SYMBOL.fullmatch(value):
        raise ValueError(f"symbol {value!r} is not a Binance symbol (e.g. BTCUSDT)")
    return value


_E = TypeVar("_E", Side, PositionSide, OrderStatus)


def _enum(kind: type[_E], value: object, name: str) -> _E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.upper())
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in kind)
    raise ValueError(f"{name} {value!r} is not one of {allowed}")


def _amount(name: str, value: object, *, positive: bool) -> Decimal:
    if isinstance(value, float):
        raise TypeError(
            f"{name} must be a str, Decimal or int, not float ({value!r}): money is never float"
        )
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise TypeError(f"{name} must be a str, Decimal or int, not {type(value).__name__}")
    if isinstance(value, Decimal):
        amount = value
    else:
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{name} must be finite, not {value!r}")
    if positive and amount <= 0:
        raise ValueError(f"{name} must be > 0, not {value!r}")
    return amount
