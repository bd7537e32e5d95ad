"""``POST /fapi/v1/countdownCancelAll``: one dead-man timer per symbol.

Each call replaces the symbol's timer with one that ends ``countdownTime`` ms from now;
``countdownTime`` 0 stops it. When a timer ends, every open *regular* order of that symbol
is canceled -- each with its ORDER_TRADE_UPDATE (x CANCELED), as a cancel by the user -- and
the timer is gone (a new call starts another). What it does not touch: other symbols,
positions (nothing is closed), and conditional orders, which since the algo-service
migration live in the algo book and have their own cancel-all
(``DELETE /fapi/v1/algoOpenOrders``); the endpoint's page speaks of "open orders" only.

The venue checks its timers about every 10 ms; the simulator checks them on each heartbeat
(``tick_interval_ms``, 200 ms by default; ``ManualClock`` tests advance the clock and tick),
so a cancel comes at most one tick after its deadline, never before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grinder.exchange.simulator.account import Account


@dataclass(frozen=True, slots=True)
class Countdown:
    symbol: str
    countdown_ms: int
    set_ms: int

    @property
    def deadline_ms(self) -> int:
        return self.set_ms + self.countdown_ms

    def dump(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "countdownTime": self.countdown_ms,
            "setMs": self.set_ms,
            "deadlineMs": self.deadline_ms,
        }


@dataclass(frozen=True, slots=True)
class Firing:
    """One timer that ended, and the orders it canceled."""

    symbol: str
    deadline_ms: int
    fired_ms: int
    canceled: int

    def dump(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "deadlineMs": self.deadline_ms,
            "firedMs": self.fired_ms,
            "canceled": self.canceled,
        }


class CountdownTimers:
    """The account's countdown timers and what they did."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.reset()

    def reset(self) -> None:
        self.timers: dict[str, Countdown] = {}
        self.firings: list[Firing] = []

    def set(self, symbol: str, countdown_ms: int, now_ms: int) -> dict[str, Any]:
        """Start, replace or (with 0) stop the symbol's timer; the endpoint's answer."""
        if countdown_ms == 0:
            self.timers.pop(symbol, None)
        else:
            self.timers[symbol] = Countdown(symbol, countdown_ms, now_ms)
        return {"symbol": symbol, "countdownTime": str(countdown_ms)}

    def check(self, now_ms: int) -> int:
        """End every timer whose deadline has passed; returns how many orders it canceled."""
        canceled = 0
        for timer in [t for t in self.timers.values() if t.deadline_ms <= now_ms]:
            del self.timers[timer.symbol]
            orders = list(self.account.open_orders(timer.symbol))
            for order in orders:
                self.account.cancel(order)
            canceled += len(orders)
            self.firings.append(Firing(timer.symbol, timer.deadline_ms, now_ms, len(orders)))
        return canceled

    def dump(self) -> dict[str, Any]:
        return {
            "timers": [t.dump() for t in self.timers.values()],
            "firings": [f.dump() for f in self.firings],
        }
