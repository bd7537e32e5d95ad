"""Leader election on Redis: a lease with a TTL, renewal, and a fencing token.

The lease is one key, ``<ns>:leader``, whose value is ``"<instance> <token> <nonce>"``:

* **Acquire** (Lua, atomic): when the key is absent, ``INCR <ns>:fencing`` gives a
  token larger than every earlier leadership's, and the key is set with ``PX`` =
  the lease TTL. A Redis that lost its data would restart the counter at 1, so
  every attempt (also a losing one) first raises it to the largest token this
  instance has seen.
* **Renew** (Lua compare-and-extend): ``PEXPIRE`` only while the value is still
  ours. A value that changed means another instance leads: this one steps down.
* **Release** on a clean stop (compare-and-delete), so a follower takes over at
  once instead of after the TTL.

**Redis losing its data** (a restart without persistence) loses the lease key,
and a follower could acquire it while the old leader still trusts its local
deadline. The deployment's epoch (``<ns>:epoch``, created with its Redis time
when absent) tells: nobody acquires while the epoch is younger than one lease
TTL, which is longer than any earlier leader's remaining local lease. Every live
instance campaigns during that wait and so raises the counter to the largest token
it knows: the first token of the new epoch is above every earlier one that a live,
reachable instance has seen (an instance cut off from Redis for the whole wait
cannot contribute; its lease value, not its token, is what fences it). The same
wait applies to a brand-new deployment's first election.

``is_leader()`` is a clock comparison, no I/O: this instance leads only until
its *local* deadline, ``t_sent + TTL - safety_margin`` on the monotonic clock,
where ``t_sent`` is the moment the acquire/renew request that succeeded was
sent. Redis starts the TTL when it *receives* that request, so the local
deadline always falls at least ``safety_margin`` before the key can expire and
another instance can acquire it: leaderships never overlap, even when a renewal
has not failed yet but simply has not happened (a paused process, a slow
network). The budget reservation (``grinder.budget.redis_store``) checks the lease value
and a remaining TTL of at least ``safety_margin`` atomically with the
reservation, which fences a deposed leader that has not noticed yet.

The elector runs in its own thread, so a busy event loop does not delay
renewals; ``healthy`` (optional) lets the service stop renewing when its loop is
stuck, so a wedged leader does not hold the lease. Followers try to acquire
every ``retry_interval``: after a leader dies, one of them leads within
``TTL + retry_interval``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from grinder.clock import Clock, wall_clock_ms
from grinder.ha.connection import RedisConnection, RedisUnavailable
from grinder.ha.lease_scripts import ACQUIRE_LUA, RELEASE_LUA, RENEW_LUA

log = logging.getLogger("grinder.ha")

DEFAULT_LEASE_MS = 10_000


def parse_lease_value(value: str) -> tuple[str, int] | None:
    """(instance id, token) of a lease value, None when it is not one of ours."""
    parts = value.split(" ")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


@dataclass(frozen=True, slots=True)
class Lease:
    """This instance's current leadership."""

    token: int
    value: str
    deadline: float
    """Monotonic seconds: this instance may act strictly before it."""
    acquired_ms: int


@dataclass(frozen=True, slots=True)
class LeadershipEvent:
    kind: Literal["acquired", "lost"]
    instance_id: str
    token: int
    reason: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class ElectorTimings:
    """Lease timings in milliseconds, checked for consistency."""

    lease_ms: int = DEFAULT_LEASE_MS
    renew_interval_ms: int | None = None
    retry_interval_ms: int | None = None
    safety_margin_ms: int | None = None

    @property
    def renew_ms(self) -> int:
        return self.renew_interval_ms or max(1, self.lease_ms // 3)

    @property
    def retry_ms(self) -> int:
        return self.retry_interval_ms or max(1, min(self.renew_ms, 500))

    @property
    def margin_ms(self) -> int:
        if self.safety_margin_ms is not None:
            return self.safety_margin_ms
        return max(1, min(1000, self.lease_ms // 10))

    def check(self) -> ElectorTimings:
        if self.lease_ms < 100:
            raise ValueError("lease TTL must be at least 100 ms")
        if not 0 <= self.margin_ms < self.lease_ms // 2:
            raise ValueError("safety margin must be >= 0 and less than half the lease TTL")
        if not 0 < self.renew_ms <= (self.lease_ms - self.margin_ms) // 2:
            raise ValueError(
                "renew interval must be > 0 and at most half of (lease TTL - safety margin), "
                "so a renewal gets a second chance before the lease runs out"
            )
        if self.retry_ms <= 0:
            raise ValueError("retry interval must be > 0")
        return self


class LeaderElector:
    """Holds (or waits for) the lease; ``is_leader()`` says whether this instance may act."""

    def __init__(
        self,
        conn: RedisConnection,
        instance_id: str,
        *,
        timings: ElectorTimings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Clock = wall_clock_ms,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        if not instance_id or any(c.isspace() for c in instance_id) or len(instance_id) > 128:
            raise ValueError(
                f"instance id must be 1-128 characters without spaces: {instance_id!r}"
            )
        self.conn = conn
        self.instance_id = instance_id
        self.timings = (timings or ElectorTimings()).check()
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.healthy = healthy
        self.lease_key = conn.key("leader")
        self.fencing_key = conn.key("fencing")
        self.epoch_key = conn.key("epoch")
        self._acquire = conn.script(ACQUIRE_LUA)
        self._renew = conn.script(RENEW_LUA)
        self._release = conn.script(RELEASE_LUA)
        self._lease: Lease | None = None
        self._lock = threading.Lock()
        self._nonce: str | None = None
        self._listeners: list[Callable[[LeadershipEvent], None]] = []
        self._epoch_listeners: list[Callable[[str], bool]] = []
        self._epoch: str | None = None
        self._epoch_pending = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._release_on_stop = True
        self.max_token_seen = 0
        self.holder: str | None = None
        """The lease value last read from Redis (ours or another instance's)."""
        self.acquisitions = 0
        self.losses = 0
        self.renew_failures = 0
        self._renew_failing = False
        self._hold_until = 0.0

    # --- what the rest of the service asks ----------------------------------------------

    def is_leader(self) -> bool:
        lease = self._lease
        return lease is not None and self.monotonic() < lease.deadline

    def lease(self) -> Lease | None:
        """The current leadership while its local deadline has not passed."""
        lease = self._lease
        if lease is None or self.monotonic() >= lease.deadline:
            return None
        return lease

    @property
    def token(self) -> int | None:
        lease = self.lease()
        return None if lease is None else lease.token

    def fence(self) -> str | None:
        """The lease value a fenced write must find in Redis; None when not leader."""
        lease = self.lease()
        return None if lease is None else lease.value

    def remaining_s(self) -> float:
        lease = self._lease
        if lease is None:
            return 0.0
        return max(0.0, lease.deadline - self.monotonic())

    @property
    def epoch(self) -> str | None:
        return self._epoch

    def add_listener(self, listener: Callable[[LeadershipEvent], None]) -> None:
        """``listener(event)`` on every acquisition and loss (called from the elector's thread,
        or from the thread that called ``step_down``/``stop``)."""
        self._listeners.append(listener)

    def add_epoch_listener(self, listener: Callable[[str], bool]) -> None:
        """``listener(epoch)`` when Redis's epoch is first seen or changes (Redis lost its
        data); called again on the next step until it returns True."""
        self._epoch_listeners.append(listener)

    # --- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"grinder-ha-elector-{self.instance_id}", daemon=True
        )
        self._thread.start()

    def stop(self, *, release: bool = True, join_s: float = 5.0) -> None:
        """Stop campaigning; with ``release`` give the lease up so a follower takes over now.

        Waits at most ``join_s`` for the elector's thread (a Redis call of its own may be
        under way); a lease that thread acquires after that is released as it ends."""
        self._release_on_stop = release
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=join_s)
        self._give_up(release)

    def _give_up(self, release: bool) -> None:
        lease = self._lease
        if lease is None:
            return
        if release:
            with contextlib.suppress(RedisUnavailable):
                self.conn.eval(
                    "release", self._release, [self.lease_key], [lease.value], probe=True
                )
        self._lose(lease, "stopped")

    def step_down(self, reason: str, *, release: bool = False, hold_s: float = 0.0) -> bool:
        """Drop leadership now; True when this instance was leading.

        A fenced write calls it (the lease is not ours any more). An operator's
        manual failover adds ``release`` (give the lease up so a follower takes it
        at once) and ``hold_s`` (do not campaign again for that long).
        """
        if hold_s > 0:
            self._hold_until = self.monotonic() + hold_s
        lease = self._lease
        if lease is None:
            return False
        if release:
            with contextlib.suppress(RedisUnavailable):
                self.conn.eval(
                    "release", self._release, [self.lease_key], [lease.value], probe=True
                )
        self._lose(lease, reason)
        return True

    @property
    def hold_remaining_s(self) -> float:
        """How long this instance still refrains from campaigning (manual failover)."""
        return max(0.0, self._hold_until - self.monotonic())

    def _run(self) -> None:
        delay = 0.0
        while not self._stopping.wait(delay):
            try:
                delay = self.step()
            except Exception:  # never let the elector thread die
                log.exception("HA_ELECTOR_ERROR instance=%s", self.instance_id)
                delay = self.timings.retry_ms / 1000
        self._give_up(self._release_on_stop)  # a lease acquired while stop() was waiting

    def step(self) -> float:
        """One acquire or renew attempt; returns the seconds until the next one."""
        t = self.timings
        retry_s = t.retry_ms / 1000
        lease = self._lease
        if lease is not None and self.monotonic() >= lease.deadline:
            self._lose(lease, "lease_expired")
            lease = None
        if self.healthy is not None and not self.healthy():
            if lease is not None:
                with contextlib.suppress(RedisUnavailable):
                    self.conn.eval(
                        "release", self._release, [self.lease_key], [lease.value], probe=True
                    )
                self._lose(lease, "unhealthy")
            return retry_s
        if lease is not None:
            delay = self._renew_step(lease)
            if delay is not None:
                self._notify_epoch()
                return delay
        if self.monotonic() < self._hold_until:
            return min(retry_s, max(0.01, self._hold_until - self.monotonic()))
        delay = self._acquire_step()
        self._notify_epoch()
        return delay

    def _renew_step(self, lease: Lease) -> float | None:
        t = self.timings
        sent = self.monotonic()
        try:
            ok, epoch = self.conn.eval(
                "renew",
                self._renew,
                [self.lease_key, self.epoch_key],
                [lease.value, t.lease_ms],
                probe=True,
            )
        except RedisUnavailable as exc:
            self.renew_failures += 1
            if self._renew_failing:
                left = lease.deadline - self.monotonic()
                return max(0.01, min(t.retry_ms / 1000, left))
            self._renew_failing = True
            log.warning(
                "HA_LEASE_RENEW_FAILED instance=%s fence=%d remaining_s=%.3f error=%s",
                self.instance_id,
                lease.token,
                self.remaining_s(),
                exc,
            )
            left = lease.deadline - self.monotonic()
            return max(0.01, min(t.retry_ms / 1000, left))
        self._renew_failing = False
        self._saw_epoch(epoch)
        if int(ok) == 1:
            renewed = replace(lease, deadline=sent + (t.lease_ms - t.margin_ms) / 1000)
            with self._lock:
                if self._lease is lease:
                    self._lease = renewed
            return t.renew_ms / 1000
        self._lose(lease, "lease_taken")
        return None

    def _acquire_step(self) -> float:
        t = self.timings
        if self._nonce is None:
            self._nonce = secrets.token_hex(8)
        sent = self.monotonic()
        try:
            got, value, epoch = self.conn.eval(
                "acquire",
                self._acquire,
                [self.lease_key, self.fencing_key, self.epoch_key],
                [
                    self.instance_id,
                    t.lease_ms,
                    self.max_token_seen,
                    self._nonce,
                    secrets.token_hex(4),
                ],
                probe=True,
            )
        except RedisUnavailable:
            self.renew_failures += 1
            return t.retry_ms / 1000
        self._saw_epoch(epoch)
        self.holder = value or None
        parsed = parse_lease_value(value)
        if parsed is not None:
            self.max_token_seen = max(self.max_token_seen, parsed[1])
        if int(got) != 1 or parsed is None:
            return t.retry_ms / 1000
        self._nonce = None
        lease = Lease(
            token=parsed[1],
            value=value,
            deadline=sent + (t.lease_ms - t.margin_ms) / 1000,
            acquired_ms=self.wall_clock(),
        )
        with self._lock:
            self._lease = lease
            self.acquisitions += 1
        self._emit(
            LeadershipEvent(
                "acquired", self.instance_id, lease.token, "acquired", lease.acquired_ms
            )
        )
        return t.renew_ms / 1000

    # --- internals -----------------------------------------------------------------------

    def _lose(self, lease: Lease, reason: str) -> None:
        with self._lock:
            if self._lease is not lease:
                return
            self._lease = None
            self.losses += 1
        self._emit(
            LeadershipEvent("lost", self.instance_id, lease.token, reason, self.wall_clock())
        )

    def _emit(self, event: LeadershipEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("HA_LISTENER_ERROR event=%s", event.kind)

    def _saw_epoch(self, epoch: str) -> None:
        if epoch and epoch != self._epoch:
            self._epoch = epoch
            self._epoch_pending = True

    def _notify_epoch(self) -> None:
        epoch = self._epoch
        if not self._epoch_pending or epoch is None:
            return
        done = True
        for listener in list(self._epoch_listeners):
            try:
                done = listener(epoch) and done
            except Exception:
                log.exception("HA_LISTENER_ERROR epoch=%s", epoch)
                done = False
        if done and self._epoch == epoch:
            self._epoch_pending = False
