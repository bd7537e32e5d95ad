"""A deterministic funding clock: settlements at fixed UTC times, at one fixed rate.

Funding settles at every multiple of ``funding_interval_ms`` since the Unix epoch (00:00,
08:00 and 16:00 UTC by default) that the simulator's clock passes after the venue started
(or was reset); a clock that jumps over several settles each of them, at the marks of the
moment it is noticed (the heartbeat after the jump). At each settlement every symbol's rate
(``funding_rate``, the same for all) is recorded for ``GET /fapi/v1/fundingRate``, and each
open position pays ``amount * mark * rate`` (a long pays when the rate is positive, a short
receives it): the wallet moves, a FUNDING_FEE income entry is written and an ACCOUNT_UPDATE
(``m`` FUNDING_FEE, the balance only, as Binance sends it for cross positions) is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator import events as ev
from grinder.exchange.simulator.account import Account
from grinder.exchange.simulator.number_text import fixed

_AMOUNT_QUANT = Decimal("1e-8")


@dataclass(frozen=True, slots=True)
class FundingEvent:
    symbol: str
    rate: Decimal
    time_ms: int
    mark: Decimal

    def view(self) -> dict[str, Any]:
        """A row of ``GET /fapi/v1/fundingRate``."""
        return {
            "symbol": self.symbol,
            "fundingRate": fixed(self.rate, 8),
            "fundingTime": self.time_ms,
            "markPrice": fixed(self.mark, 8),
        }


class FundingClock:
    """Settles funding for the account when the clock passes a funding time."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.reset()

    def reset(self) -> None:
        self.history: list[FundingEvent] = []
        self._checked_ms = self.account.now()

    @property
    def interval_ms(self) -> int:
        return self.account.config.funding_interval_ms

    def next_time(self, now_ms: int) -> int:
        """The next funding time after ``now_ms`` (``0`` when funding is off)."""
        step = self.interval_ms
        return (now_ms // step + 1) * step if step > 0 else 0

    def check(self, now_ms: int) -> int:
        """Settle every funding time in (last check, now]; returns how many."""
        step = self.interval_ms
        if step <= 0:
            self._checked_ms = now_ms
            return 0
        settled = 0
        due = self.next_time(self._checked_ms)
        while due <= now_ms:
            self.settle(due)
            settled += 1
            due += step
        self._checked_ms = now_ms
        return settled

    def settle(self, funding_time: int) -> None:
        account = self.account
        rate = account.config.funding_rate
        for symbol in account.specs:
            self.history.append(FundingEvent(symbol, rate, funding_time, account.book.mark(symbol)))
        now = account.now()
        for (symbol, _side), pos in list(account.positions.items()):
            if pos.amt == 0:
                continue
            mark = account.book.mark(symbol)
            payment = (-pos.amt * mark * rate).quantize(_AMOUNT_QUANT)
            if payment == 0:
                continue
            account.wallet += payment
            account.wallet_update_ms = now
            asset = pos.spec.quote_asset
            account.ledger.record_funding(symbol, payment, asset, now)
            account.emit(
                ev.account_update(
                    "FUNDING_FEE", now, wallet=account.wallet, balance_change=payment, positions=[]
                )
            )

    def rates(
        self, symbol: str | None, start: int | None, end: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """``GET /fapi/v1/fundingRate``: ascending; the oldest ``limit`` from ``start`` when a
        start is given, else the newest ``limit``."""
        rows = [
            e
            for e in self.history
            if (symbol is None or e.symbol == symbol)
            and (start is None or e.time_ms >= start)
            and (end is None or e.time_ms <= end)
        ]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [e.view() for e in rows]
