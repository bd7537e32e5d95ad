"""One instance's HA parts, wired together: connection, elector, shared budget, metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grinder.budget.redis_store import RedisBudgetStore
from grinder.budget.stores import FileBudgetStore
from grinder.clock import Clock, wall_clock_ms
from grinder.ha.config import HaSettings
from grinder.ha.connection import RedisConnection
from grinder.ha.elector import LeaderElector, parse_lease_value
from grinder.ha.metrics import HaMetrics
from grinder.ha.operator import RedisOperatorStore
from grinder.state.redis_store import RedisExpectedStore


class HaRuntime:
    """Builds and owns the HA objects of one instance; nothing connects until used."""

    def __init__(
        self,
        settings: HaSettings,
        *,
        budget_mirror: Path | None = None,
        clock: Clock = wall_clock_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = settings.config
        timings = cfg.timings()
        self.settings = settings
        self.conn = RedisConnection(
            settings.redis_url,
            namespace=cfg.namespace,
            timeout_s=cfg.redis_timeout_s,
            client_name=f"grinder-{settings.instance_id}",
        )
        self.elector = LeaderElector(
            self.conn, settings.instance_id, timings=timings, monotonic=monotonic
        )
        self.budget_store = RedisBudgetStore(
            self.conn,
            fence=self.elector.fence,
            min_lease_ms=timings.margin_ms,
            recovery_ms=cfg.recovery_ms,
            mirror=FileBudgetStore(budget_mirror) if budget_mirror is not None else None,
            clock=clock,
            on_fenced=self.elector.step_down,
        )
        self.elector.add_epoch_listener(self.budget_store.restore)
        self.operator_store = RedisOperatorStore(self.conn)
        """The deployment's operator state (``grinder.service.operator`` reads it)."""

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id

    def open_expected(self) -> RedisExpectedStore:
        """The shared expected state, read-only (the bot writes it); loaded on first refresh."""
        return RedisExpectedStore(self.conn, readonly=True, load=False)

    def bind_metrics(self, metrics: HaMetrics) -> None:
        metrics.enabled.set(1)
        elector = self.elector

        def on_error(op: str) -> None:
            metrics.redis_error(op)
            if op in ("acquire", "renew"):
                metrics.renew_failures.inc()

        self.conn.on_error(on_error)
        self.conn.on_state(lambda up, _err: metrics.redis_up.set(1 if up else 0))
        metrics.redis_up.set(1 if self.conn.up else 0)
        self.budget_store.on_refused = lambda kind: metrics.reservations_refused.labels(
            reason=kind
        ).inc()
        metrics.lease_held.set_function(lambda: 1.0 if elector.is_leader() else 0.0)
        metrics.fencing_token.set_function(lambda: float(elector.token or 0))
        metrics.lease_remaining.set_function(elector.remaining_s)

    def status(self) -> dict[str, Any]:
        elector = self.elector
        holder = parse_lease_value(elector.holder) if elector.holder else None
        lease = elector.lease()
        return {
            "enabled": True,
            "instance_id": self.instance_id,
            "leader": lease is not None,
            "token": None if lease is None else lease.token,
            "leader_since_ms": None if lease is None else lease.acquired_ms,
            "checked_ms": wall_clock_ms(),
            "lease_remaining_s": round(elector.remaining_s(), 3),
            "last_seen_holder": holder[0] if holder else None,
            "max_token_seen": elector.max_token_seen,
            "campaign_hold_s": round(elector.hold_remaining_s, 3),
            "redis_up": self.conn.up,
            "redis": self.conn.display_url,
            "namespace": self.settings.namespace,
            "lease_ttl_s": self.settings.config.lease_ttl_s,
        }

    def close(self, *, join_s: float = 5.0) -> None:
        """Stop campaigning and release the lease (waiting at most ``join_s`` for the
        elector's thread), then close the connection."""
        self.elector.stop(release=True, join_s=join_s)
        self.conn.close()
