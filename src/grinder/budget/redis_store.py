"""The daily budget and the cooldown anchor in Redis, reserved atomically and fenced.

``RedisBudgetStore`` is the ``BudgetStore`` (``grinder.budget.stores``) several instances
share: one Lua script checks, in a single atomic step,

1. that the lease key still holds *this* leadership's value (fencing: a deposed
   leader that has not noticed yet is refused) and has at least the safety
   margin left to live;
2. that Redis's epoch is older than the recovery window (after Redis lost its
   data, the other instances get that long to push back what they know);
3. the day's call and notional limits;

and only then increments the day's usage and raises the cooldown anchor
(``<ns>:last_write_ms``). Any refusal means the executor does not call the
exchange; a refusal for fencing, an expiring lease, recovery or an unreachable
Redis is the block reason ``not_leader``. The reservation happens before the
exchange call (write-ahead): a crash or a lost reply after it over-counts,
never under-counts.

Notional is kept as an integer number of 1e-8 USDT ("units"), rounded up when
reserving, so Lua's double arithmetic is exact for any realistic daily volume
(up to ~9e7 USDT) and rounding can only over-count.

**Redis losing its data.** Each instance remembers the usage it last saw or
reserved (and the last write time). When the elector sees a new epoch, the
store pushes that knowledge back with a raise-to-at-least merge; reservations
wait out the recovery window so every live instance has done so first. An
operator's reset (``--reset-budget-state``) stamps ``reset_ts``; knowledge older
than the reset is ignored, so a reset is not undone by an instance that still
remembers the old count. An optional local JSON mirror (``BUDGET_STATE_PATH``)
receives every new state and seeds the store at start-up the same way.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from grinder.budget.ledger import (
    BudgetRefused,
    BudgetState,
    BudgetStateError,
    from_the_future,
    future_warning,
    kept_for_today,
    utc_day,
)
from grinder.budget.redis_scripts import MERGE_LUA, RESERVE_LUA
from grinder.budget.stores import ExitSave, FileBudgetStore
from grinder.clock import Clock, wall_clock_ms
from grinder.ha.connection import RedisConnection, RedisUnavailable
from grinder.reconcile.labels import BlockReason

log = logging.getLogger("grinder.ha")

UNITS_PER_USDT = 10**8
DAY_KEY_TTL_S = 3 * 86_400


def to_units(amount: Decimal, *, up: bool) -> int:
    scaled = amount * UNITS_PER_USDT
    return int(scaled.to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


def from_units(units: int) -> Decimal:
    return Decimal(units) / Decimal(UNITS_PER_USDT)


class RedisBudgetStore:
    """The shared daily budget: atomic, fenced reservations in Redis (see the module doc)."""

    def __init__(
        self,
        conn: RedisConnection,
        *,
        fence: Callable[[], str | None],
        min_lease_ms: int,
        recovery_ms: int,
        mirror: FileBudgetStore | None = None,
        clock: Clock = wall_clock_ms,
        on_fenced: Callable[[str], object] | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.conn = conn
        self.fence = fence
        self.min_lease_ms = min_lease_ms
        self.recovery_ms = recovery_ms
        self.mirror = mirror
        self.clock = clock
        self.on_fenced = on_fenced
        self.on_refused = on_refused
        self.lease_key = conn.key("leader")
        self.last_write_key = conn.key("last_write_ms")
        self.epoch_key = conn.key("epoch")
        self._reserve = conn.script(RESERVE_LUA)
        self._merge = conn.script(MERGE_LUA)
        self._known: BudgetState | None = None
        self._known_last_write: int | None = None

    def day_key(self, day: str) -> str:
        return self.conn.key("budget", day)

    @property
    def where(self) -> str:
        return f"{self.conn.display_url} key {self.day_key('<day>')}"

    # --- BudgetStore ---------------------------------------------------------------------

    def load(self) -> BudgetState | None:
        """Today's usage: Redis's, raised to the local mirror's when Redis lost it.

        An unreachable Redis is not fatal here (the service starts, detects and
        reports; remediation waits for Redis); a corrupt mirror file is.
        """
        now = self.clock()
        day = utc_day(now)
        shared: BudgetState | None = None
        reset_ts = 0
        try:
            shared, reset_ts = self._fetch(day)
        except RedisUnavailable as exc:
            log.warning(
                "HA_BUDGET_LOAD_FAILED error=%s (starting from the local copy, if any; "
                "no remediation until Redis answers)",
                exc,
            )
        local = self.mirror.load() if self.mirror is not None else None
        if self.mirror is not None and local is not None and from_the_future(local, now):
            log.warning("%s", future_warning(str(self.mirror.path), local, now))
            local = kept_for_today(local, now)
        state = shared
        if local is not None and local.day == day and local.updated_ts_ms > reset_ts:
            state = _higher(shared, local)
        self._remember(state)
        return state

    def save(self, state: BudgetState) -> None:
        """Only the local mirror: Redis usage only ever grows through ``reserve``."""
        self._remember(state)
        if self.mirror is not None:
            self.mirror.save(state)

    def fetch(self, day: str) -> BudgetState | None:
        """The day's usage as Redis holds it (what every instance spent);
        ``BudgetStateError`` when Redis cannot be read."""
        try:
            state, _ = self._fetch(day)
        except RedisUnavailable as exc:
            raise BudgetStateError(str(exc)) from None
        self._remember(state)
        return state

    def reserve(
        self,
        current: BudgetState,
        notional: Decimal,
        now_ms: int,
        *,
        max_calls_per_day: int,
        max_notional_per_day: Decimal,
    ) -> BudgetState:
        """One call reserved in one atomic step: the lease still ours (fencing), Redis past
        its recovery window, the day's limits; ``BudgetRefused`` on any refusal."""
        fence = self.fence()
        if fence is None:
            self._refused("not_leader")
            raise BudgetRefused(BlockReason.NOT_LEADER, "this instance does not hold the lease")
        day = current.day
        # What this instance knows best: the newer of the tracker's state and the store's.
        known = self._known
        floor = current
        if known is not None and known.day == day and known.updated_ts_ms > current.updated_ts_ms:
            floor = known
        args: list[str | int] = [
            fence,
            self.min_lease_ms,
            to_units(notional, up=True),
            max_calls_per_day,
            to_units(max_notional_per_day, up=False),
            floor.calls_used_day,
            to_units(floor.notional_used_day, up=True),
            floor.updated_ts_ms,
            now_ms,
            DAY_KEY_TTL_S,
            self.recovery_ms,
            secrets.token_hex(4),
        ]
        keys = [self.lease_key, self.day_key(day), self.last_write_key, self.epoch_key]
        try:
            reply = self.conn.eval("budget_reserve", self._reserve, keys, args)
        except RedisUnavailable as exc:
            self._refused("redis_unavailable")
            raise BudgetRefused(
                BlockReason.NOT_LEADER, f"cannot reserve budget (fail closed): {exc}"
            ) from None
        return self._reserved(day, reply, now_ms)

    def _reserved(self, day: str, reply: list[Any], now_ms: int) -> BudgetState:
        """The script's answer: the day's usage after the call, or ``BudgetRefused``."""
        kind = str(reply[0])
        if kind == "fenced":
            self._refused("fenced")
            if self.on_fenced is not None:
                self.on_fenced("fenced")
            holder = str(reply[1]) or "nobody"
            raise BudgetRefused(BlockReason.NOT_LEADER, f"fenced: the lease is held by {holder}")
        if kind == "lease_expiring":
            self._refused("lease_expiring")
            raise BudgetRefused(
                BlockReason.NOT_LEADER, f"lease has {reply[1]} ms left, under the safety margin"
            )
        if kind == "recovering":
            self._refused("recovering")
            raise BudgetRefused(
                BlockReason.NOT_LEADER,
                f"Redis epoch is {reply[1]} ms old (first start or data lost): waiting "
                f"{self.recovery_ms} ms for every instance to restore what it knows",
            )
        state = BudgetState(
            day=day,
            calls_used_day=int(reply[1]),
            notional_used_day=from_units(int(reply[2])),
            updated_ts_ms=int(reply[3]),
        )
        self._remember(state)
        if kind != "ok":
            self._refused(kind)
            reason = (
                BlockReason.MAX_CALLS_PER_DAY
                if kind == "max_calls_per_day"
                else BlockReason.MAX_NOTIONAL_PER_DAY
            )
            raise BudgetRefused(reason, f"shared daily budget: {kind}", state)
        self._known_last_write = now_ms
        if self.mirror is not None:
            self.mirror.save(state)
        return state

    def reset_shown(self, day: str) -> Path | str | None:
        """The local copy's path, else the day's key in Redis."""
        return self.mirror.path if self.mirror is not None else self.day_key(day)

    def exit_save(self, state: BudgetState) -> ExitSave | None:
        """The local copy (Redis usage only ever grows through ``reserve``)."""
        return ExitSave("the shared budget state", None, lambda: self.save(state))

    # --- the cooldown anchor -------------------------------------------------------------

    def last_write_ms(self) -> int | None:
        """When the last paid write was reserved by any instance (None: unknown)."""
        try:
            raw = self.conn.run("cooldown", lambda c: c.get(self.last_write_key))
        except RedisUnavailable:
            return self._known_last_write
        if raw is None:
            return self._known_last_write
        value = int(raw)
        if self._known_last_write is None or value > self._known_last_write:
            self._known_last_write = value
        return value

    # --- recovery ------------------------------------------------------------------------

    def restore(self, _epoch: str = "") -> bool:
        """Push what this instance knows back to Redis (raise-to-at-least); True when done."""
        known = self._known
        now_day = utc_day(self.clock())
        calls, units, ts, day = 0, 0, 0, now_day
        if known is not None and known.day == now_day:
            calls = known.calls_used_day
            units = to_units(known.notional_used_day, up=True)
            ts = known.updated_ts_ms
        try:
            self.conn.eval(
                "budget_restore",
                self._merge,
                [self.day_key(day), self.last_write_key],
                [calls, units, ts, self._known_last_write or 0, DAY_KEY_TTL_S],
            )
        except RedisUnavailable:
            return False
        if calls:
            log.info("HA_BUDGET_RESTORED day=%s calls_used_day=%d", day, calls)
        return True

    def reset(self, now_ms: int) -> None:
        """Start the day clean, for every instance (``--reset-budget-state``), then the
        local copy (``BudgetStateError`` when Redis cannot be reached: nothing is reset)."""
        day = utc_day(now_ms)
        key = self.day_key(day)

        def do(c: object) -> None:
            pipe = self.conn.client.pipeline(transaction=True)
            pipe.hset(
                key,
                mapping={"calls": 0, "units": 0, "updated_ts": now_ms, "reset_ts": now_ms},
            )
            pipe.expire(key, DAY_KEY_TTL_S)
            pipe.execute()

        try:
            self.conn.run("budget_reset", do)
        except RedisUnavailable as exc:
            raise BudgetStateError(f"cannot reset the shared budget: {exc}") from None
        self._known = BudgetState(day=day, updated_ts_ms=now_ms)
        if self.mirror is not None:
            self.mirror.reset()

    # --- internals -----------------------------------------------------------------------

    def _fetch(self, day: str) -> tuple[BudgetState | None, int]:
        raw = self.conn.run(
            "budget_load",
            lambda c: c.hmget(self.day_key(day), ["calls", "units", "updated_ts", "reset_ts"]),
        )
        calls, units, updated, reset_ts = raw
        if calls is None and units is None:
            return None, int(reset_ts or 0)
        try:
            state = BudgetState(
                day=day,
                calls_used_day=int(calls or 0),
                notional_used_day=from_units(int(units or 0)),
                updated_ts_ms=int(updated or 0),
            )
        except ValueError as exc:
            raise BudgetStateError(f"{self.where}: corrupt budget state ({exc})") from None
        return state, int(reset_ts or 0)

    def _remember(self, state: BudgetState | None) -> None:
        if state is None:
            return
        known = self._known
        if known is None or known.day != state.day:
            self._known = state
        else:
            self._known = state if state.updated_ts_ms >= known.updated_ts_ms else known

    def _refused(self, kind: str) -> None:
        if self.on_refused is not None:
            self.on_refused(kind)


def _higher(a: BudgetState | None, b: BudgetState | None) -> BudgetState | None:
    """Field-wise maximum of two states of the same day."""
    if a is None:
        return b
    if b is None or b.day != a.day:
        return a
    return BudgetState(
        day=a.day,
        calls_used_day=max(a.calls_used_day, b.calls_used_day),
        notional_used_day=max(a.notional_used_day, b.notional_used_day),
        updated_ts_ms=max(a.updated_ts_ms, b.updated_ts_ms),
    )
