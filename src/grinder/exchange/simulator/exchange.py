"""The simulated venue as one object: market, account, algo service, stream, limits, faults.

``Simulator`` is what the HTTP app, the control API and in-process tests
share. ``heartbeat()`` is one tick of the venue's life: the mark prices step
(unless frozen), crossed orders trade, conditional orders trigger, GTD orders
and listenKeys expire, old sockets close. ``run()`` calls it every
``tick_interval_ms``; tests may call it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from grinder.exchange.simulator.account import Account
from grinder.exchange.simulator.algo import AlgoRequest, parse_algo_order
from grinder.exchange.simulator.algobook import AlgoBook
from grinder.exchange.simulator.book import MarketBook
from grinder.exchange.simulator.candles import CandleStore
from grinder.exchange.simulator.clock import Clock, SystemClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.countdown import CountdownTimers
from grinder.exchange.simulator.faults import Faults
from grinder.exchange.simulator.funding import FundingClock
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.symbols import exchange_info, rate_limits, resolve_symbols
from grinder.exchange.simulator.userstream import StreamHub
from grinder.exchange.simulator.validation import OrderRequest, parse_new_order
from grinder.exchange.simulator.weights import OrderCounter, RateLimiter
from grinder.exchange.simulator.writelog import WriteLog

log = logging.getLogger(__name__)


class Simulator:
    """All state of one simulated Binance USDⓈ-M venue with one account."""

    def __init__(self, config: SimConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock: Clock = clock or SystemClock()
        self.specs = resolve_symbols(self.config.symbols)
        self.faults = Faults()
        self.book = MarketBook(
            self.specs,
            seed=self.config.seed,
            volatility=self.config.walk_volatility,
            frozen=self.config.walk_frozen,
        )
        self.hub = StreamHub(self.clock, self.config, lambda: self.faults.ws_latency_ms)
        self.account = Account(self.specs, self.book, self.clock, self.config, self.hub.publish)
        self.algos = AlgoBook(self.specs, self.account, self.config, self.hub.publish)
        self.candles = CandleStore(self.specs)
        self.account.ledger.on_trade = self.candles.trade
        self.funding = FundingClock(self.account)
        self.countdowns = CountdownTimers(self.account)
        self.limiter = RateLimiter(self.clock, self.config)
        self.order_counter = OrderCounter(self.clock, self.config)
        self.requests: Counter[str] = Counter()
        self.requests_by_key: Counter[tuple[str, str]] = Counter()
        """Requests by (API key or ``-`` when none was sent, "METHOD /path")."""
        self.write_requests = 0
        self.write_log = WriteLog()
        self.heartbeats = 0
        self.internal_errors = 0
        """Requests that raised an unexpected exception (answered 500 / -1000)."""
        self._task: asyncio.Task[None] | None = None

    def secret_for(self, api_key: str) -> str | None:
        """The secret of one of the account's API keys; None for a key it does not have."""
        if api_key == self.config.api_key:
            return self.config.api_secret
        return self.config.more_keys.get(api_key)

    # --- time ---------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def server_time(self) -> int:
        """The venue's clock as clients see it: local time plus the injected skew."""
        return self.clock.now_ms() + self.faults.clock_skew_ms

    # --- requests ---------------------------------------------------------------------------

    def order_request(self, params: Params) -> OrderRequest:
        """A new regular order's parameters, checked against the mode, marks and time now."""
        return parse_new_order(
            params, self.specs, dual=self.account.dual, mark_of=self.book.mark, now_ms=self.now_ms()
        )

    def algo_request(self, params: Params) -> AlgoRequest:
        """A new algo order's parameters, checked against the mode, marks and time now."""
        return parse_algo_order(
            params, self.specs, dual=self.account.dual, mark_of=self.book.mark, now_ms=self.now_ms()
        )

    # --- the venue's life ---------------------------------------------------------------------

    def heartbeat(self, *, walk: bool = True) -> None:
        self.heartbeats += 1
        if walk:
            self.book.step()
        for symbol in self.specs:
            self.match(symbol)
        now = self.now_ms()
        self.account.expire_due(now)
        self.countdowns.check(now)
        self.funding.check(now)
        self.hub.check()

    def match(self, symbol: str) -> None:
        """Trade what the current mark has crossed and fire what it has triggered."""
        self.candles.observe(symbol, self.book.mark(symbol), self.now_ms())
        self.algos.on_price(symbol)
        self.account.on_price(symbol)

    async def run(self) -> None:
        interval = max(self.config.tick_interval_ms, 1) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self.heartbeat()
            except Exception:  # pragma: no cover - a bug must not stop the venue
                log.exception("simulator heartbeat failed")

    def start_background(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop_background(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def reset(self, seed: int | None = None) -> None:
        """Back to the starting state (same seed unless a new one is given)."""
        if seed is not None:
            self.config.seed = seed
        self.book.reset(self.config.seed)
        self.book.frozen = self.config.walk_frozen
        self.book.volatility = self.config.walk_volatility
        self.account.reset()
        self.algos.reset()
        self.candles.reset()
        self.funding.reset()
        self.countdowns.reset()
        self.hub.expire_all()
        self.hub.reset()
        self.limiter.reset()
        self.order_counter.reset()
        self.faults.reset()
        self.requests.clear()
        self.requests_by_key.clear()
        self.write_requests = 0
        self.write_log.clear()

    # --- views --------------------------------------------------------------------------------

    def exchange_info(self) -> dict[str, Any]:
        limits = rate_limits(
            self.config.weight_limit, self.config.orders_per_minute, self.config.orders_per_10s
        )
        return exchange_info(list(self.specs.values()), self.server_time(), limits)

    def dump(self) -> dict[str, Any]:
        """Everything, for ``GET /_sim/state``."""
        account = self.account
        return {
            "serverTime": self.server_time(),
            "positionMode": "HEDGE" if account.dual else "ONE_WAY",
            "dualSidePosition": account.dual,
            "walletBalance": str(account.wallet),
            "markPrices": self.book.snapshot(),
            "walkFrozen": self.book.frozen,
            "orders": [o.dump() for o in account.open_orders()],
            "algoOrders": [a.query_view() for a in self.algos.open_orders()],
            "positions": [
                p.dump(self.book.mark(p.symbol)) for p in account.positions.values() if p.amt != 0
            ],
            "countdowns": self.countdowns.dump(),
            "ledger": {
                "trades": len(account.ledger.trades),
                "incomes": len(account.ledger.incomes),
                "totalIncome": str(account.ledger.total_income()),
            },
            "weights": self.limiter.dump(),
            "stream": self.hub.dump(),
            "faults": self.faults.dump(),
            "counters": {
                "writeRequests": self.write_requests,
                "requests": sum(self.requests.values()),
                "byEndpoint": dict(sorted(self.requests.items())),
                "byApiKey": self._requests_by_key(),
                "openOrders": account.open_count(),
                "knownOrders": len(account.orders),
                "heartbeats": self.heartbeats,
                "internalErrors": self.internal_errors,
            },
        }

    def _requests_by_key(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (key, endpoint), n in sorted(self.requests_by_key.items()):
            out.setdefault(key, {})[endpoint] = n
        return out
