"""The dead-man switch in the running service: renews Binance's countdown, leader only.

Every ``tick_s`` the switch reads the deployment's health (``Health``: leadership,
lease left, the bot's heartbeat, the stream, the snapshot age) and, for each symbol
whose renewal is due, either sends ``countdown_cancel_all(symbol, countdown)`` or
withholds it (``grinder.deadman.decision``). A renewal is a write like the
remediation's: authorized at the wire right before it leaves (the same check again,
and the write fence's window as its ``recvWindow``, D44), sent once; a failed one is
tried again half a renewal interval later. A new leadership renews at once, so a
failover hands the countdown over within the lease TTL plus one tick.

When renewals are withheld the countdown runs on: the exchange cancels the symbol's
open orders when it ends. That is the switch's purpose -- a bot that stopped recording,
a deployment that died or lost its view of the exchange leaves no orders behind.

Switched off at run time (a reload with ``enabled = false``) the acting instance stops
each countdown it knows of (``countdownTime = 0``) and renews no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from grinder.clock import Clock
from grinder.deadman.config import DeadmanConfig
from grinder.deadman.decision import (
    Health,
    SymbolRenewals,
    Withhold,
    countdown_left_ms,
    is_due,
    withhold_reason,
)
from grinder.deadman.metrics import DeadmanMetrics
from grinder.exchange.port import CountdownPort, ExchangeError, WriteWithheld
from grinder.reconcile.types import ObservedOrder
from grinder.reconcile.write_window import write_window_ms
from grinder.reporting.logs import log_event

log = logging.getLogger("grinder.service")

MAX_TICK_S = 1.0


class DeadmanSwitch:
    """Renews the countdown of each configured symbol while the deployment is healthy."""

    def __init__(
        self,
        config: DeadmanConfig,
        port: CountdownPort,
        *,
        health: Callable[[], Health],
        leadership: Callable[[], int | None],
        open_orders: Callable[[], Iterable[ObservedOrder]],
        metrics: DeadmanMetrics,
        clock: Clock,
        audit_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.port = port
        self._health = health
        self._leadership = leadership
        self._open_orders = open_orders
        self.metrics = metrics
        self.clock = clock
        self._audit = audit_event
        self.enabled = config.enabled
        self.tick_s = min(MAX_TICK_S, config.renew_interval_s / 4)
        self._token: int | None = None
        self._renewals = {s: SymbolRenewals() for s in config.symbols}
        self._withheld: dict[str, tuple[Withhold, int]] = {}
        self._wake = asyncio.Event()
        metrics.countdown.set(config.countdown_s)
        metrics.enabled.set(1 if config.enabled else 0)
        for symbol in config.symbols:
            metrics.armed.labels(symbol=symbol).set_function(self._armed_reader(symbol))
            metrics.countdown_left.labels(symbol=symbol).set_function(self._left_reader(symbol))
            metrics.uncovered.labels(symbol=symbol).set_function(self._uncovered_reader(symbol))

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick until cancelled (the service's stop)."""
        while True:
            try:
                await self.tick()
            except Exception:  # one failed tick must not end the switch
                log.exception("DEADMAN_TICK_FAILED")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)

    def wake(self) -> None:
        """Tick now (a new leadership acts, a reload changed ``enabled``)."""
        self._wake.set()

    async def tick(self) -> None:
        token = self._leadership()
        if token != self._token:
            # A new leadership (or none): what the last one renewed is not ours to count on.
            self._token = token
            self._renewals = {s: SymbolRenewals() for s in self.config.symbols}
        if not self.enabled:
            await self._stop_countdowns()
            return
        now = self.clock()
        health = self._health()
        for symbol in self.config.symbols:
            if not is_due(self._renewals[symbol], self.config.renew_interval_ms, now):
                continue
            reason = withhold_reason(health)
            if reason is not None:
                self._note_withheld(symbol, reason, now)
                continue
            await self._renew(symbol, self.config.countdown_ms)

    def set_enabled(self, enabled: bool) -> None:
        """A reload's ``[deadman] enabled``: the next tick renews, or stops the countdowns."""
        self.enabled = enabled
        self.metrics.enabled.set(1 if enabled else 0)
        self.wake()

    # --- sending -------------------------------------------------------------------------

    def _authorize(self) -> int:
        """Right before a request leaves: the same check again, then the fence's window."""
        health = self._health()
        reason = withhold_reason(health)
        if reason is not None:
            raise WriteWithheld(reason)
        window = write_window_ms(health.lease_left_ms)
        assert window is not None  # withhold_reason refused a lease too short for one
        return window

    async def _renew(self, symbol: str, countdown_ms: int) -> bool:
        sent = self.clock()
        try:
            await self.port.countdown_cancel_all(symbol, countdown_ms, authorize=self._authorize)
        except WriteWithheld as exc:
            self._note_withheld(symbol, Withhold(exc.reason), sent)
            return False
        except ExchangeError as exc:
            outcome = "unknown" if exc.outcome_unknown else "rejected" if exc.sent else "failed"
            self._failed(symbol, sent, outcome, exc)
            return False
        except Exception as exc:  # an unexpected error: the renewal's fate is unknown
            self._failed(symbol, sent, "unknown", exc)
            return False
        self.metrics.renewals.labels(outcome="accepted").inc()
        first = self._renewals[symbol].accepted_ms is None
        self._renewals[symbol] = SymbolRenewals(accepted_ms=sent)
        self.metrics.last_renewal.labels(symbol=symbol).set(sent / 1000)
        if self._withheld.pop(symbol, None) is not None or first:
            fields = {"symbol": symbol, "countdown_ms": countdown_ms, "fence": self._token}
            log_event(log, "DEADMAN_RENEWING", logging.WARNING, **fields)
            self._audit("DEADMAN_RENEWING", fields)
        return True

    def _failed(self, symbol: str, sent: int, outcome: str, exc: BaseException) -> None:
        self.metrics.renewals.labels(outcome=outcome).inc()
        self._renewals[symbol] = replace(self._renewals[symbol], failed_ms=sent)
        error = " ".join(f"{type(exc).__name__}: {exc}".split())
        log_event(
            log,
            "DEADMAN_RENEWAL_FAILED",
            logging.WARNING,
            symbol=symbol,
            outcome=outcome,
            error=error,
            retry_in_s=f"{self.config.renew_interval_s / 2:g}",
        )

    def _note_withheld(self, symbol: str, reason: Withhold, now: int) -> None:
        """Count a withheld due renewal once per renewal interval; log when the reason
        changes. A follower's ``not_acting`` is its normal state: neither."""
        if reason is Withhold.NOT_ACTING:
            self._withheld.pop(symbol, None)
            return
        last = self._withheld.get(symbol)
        if last is not None and last[0] is reason:
            if now - last[1] < self.config.renew_interval_ms:
                return
        else:
            left = countdown_left_ms(self._renewals[symbol], self.config.countdown_ms, now)
            fields: dict[str, Any] = {
                "symbol": symbol,
                "reason": reason.value,
                "countdown_left_s": None if left is None else round(left / 1000, 1),
                "effect": "the exchange cancels the symbol's open orders when it ends",
            }
            log_event(log, "DEADMAN_RENEWALS_WITHHELD", logging.WARNING, **fields)
            self._audit("DEADMAN_RENEWALS_WITHHELD", fields)
        self._withheld[symbol] = (reason, now)
        self.metrics.withheld.labels(reason=reason.value).inc()

    async def _stop_countdowns(self) -> None:
        """Switched off: stop each countdown this leadership set (``countdownTime=0``)."""
        now = self.clock()
        retry_ms = self.config.renew_interval_ms // 2
        for symbol, renewals in self._renewals.items():
            if renewals.accepted_ms is None:
                continue
            if renewals.failed_ms is not None and now < renewals.failed_ms + retry_ms:
                continue  # a failed stop is sent again at the renewals' pace, not every tick
            try:
                await self.port.countdown_cancel_all(symbol, 0, authorize=self._authorize)
            except (WriteWithheld, ExchangeError) as exc:
                self._renewals[symbol] = replace(renewals, failed_ms=now)
                error = " ".join(f"{type(exc).__name__}: {exc}".split())
                log_event(log, "DEADMAN_STOP_FAILED", logging.WARNING, symbol=symbol, error=error)
                continue
            self._renewals[symbol] = SymbolRenewals()
            log_event(log, "DEADMAN_STOPPED", logging.WARNING, symbol=symbol)
            self._audit("DEADMAN_STOPPED", {"symbol": symbol})

    # --- what it reports -----------------------------------------------------------------

    def _armed_reader(self, symbol: str) -> Callable[[], float]:
        def read() -> float:
            left = countdown_left_ms(self._renewals[symbol], self.config.countdown_ms, self.clock())
            return 1.0 if left else 0.0

        return read

    def _left_reader(self, symbol: str) -> Callable[[], float]:
        def read() -> float:
            left = countdown_left_ms(self._renewals[symbol], self.config.countdown_ms, self.clock())
            return 0.0 if left is None else left / 1000

        return read

    def _uncovered_reader(self, symbol: str) -> Callable[[], float]:
        def read() -> float:
            return float(sum(1 for o in self._open_orders() if o.is_algo and o.symbol == symbol))

        return read

    def status(self) -> dict[str, Any]:
        now = self.clock()
        health = self._health()
        reason = withhold_reason(health)
        symbols = {}
        for symbol, renewals in self._renewals.items():
            left = countdown_left_ms(renewals, self.config.countdown_ms, now)
            symbols[symbol] = {
                "last_accepted_ts_ms": renewals.accepted_ms,
                "countdown_left_s": None if left is None else round(left / 1000, 3),
                "uncovered_conditional_orders": int(self._uncovered_reader(symbol)()),
            }
        return {
            "enabled": self.enabled,
            "countdown_s": self.config.countdown_s,
            "renew_interval_s": self.config.renew_interval_s,
            "withheld": None if reason is None else reason.value,
            "symbols": symbols,
        }
