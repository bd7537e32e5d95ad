"""The service's side of HA: gate 0, take-over, leadership and Redis events, step-down.

The elector and the Redis connection call back from the elector's thread; every
callback is moved to the event loop (``call_soon_threadsafe``) before it logs,
audits or touches the service. Gate 0 passes only for a leadership whose REST
snapshot was taken after it was acquired (``HA_LEADER_ACTING``).

At the stop the lease is released from a thread of its own, and the service
waits for that only its part of the shutdown deadline: a Redis that does not
answer never holds the stop up (the lease then ends with its TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

from grinder.ha.elector import LeadershipEvent
from grinder.ha.metrics import HaMetrics
from grinder.ha.runtime import HaRuntime
from grinder.reporting.logs import log_event

log = logging.getLogger("grinder.service")

HEARTBEAT_S = 0.1


@dataclass(frozen=True)
class HaHooks:
    """What the HA side asks of the service, and nothing more."""

    snapshot: Callable[[], Awaitable[None]]
    """A REST snapshot now (raises when it fails; it logs that itself)."""
    on_acting: Callable[[], None]
    """A leadership now acts: a run at once, the dead-man countdown handed over."""
    audit_event: Callable[[str, dict[str, Any]], None]
    on_change: Callable[[str, str, Any, Any], None]
    """``(source, field, old, new)``: logged and audited as ``CONTROL_CHANGE``."""
    refresh_operator: Callable[[], None]
    """Read the operator state again (and write back one held here)."""
    stopping: Callable[[], bool]
    spawn: Callable[[Coroutine[Any, Any, None], str], None]
    """Run a task the service cancels at its stop."""


class ServiceHa:
    """Binds one ``HaRuntime`` to the running service: gate 0 (which leadership acts) once
    built, the campaign from ``start(hooks)`` on (the hooks reach the service's other
    parts, built after this one: the executor reads gate 0)."""

    def __init__(self, runtime: HaRuntime, ha_metrics: HaMetrics, leader_gauge: Gauge) -> None:
        self.runtime = runtime
        self.ha_metrics = ha_metrics
        self.leader_gauge = leader_gauge
        self.elector = runtime.elector
        self._acting_token: int | None = None
        self._beat = time.monotonic()
        self._loop = asyncio.get_running_loop()
        """The loop the elector's callbacks are moved to (the service's)."""
        runtime.bind_metrics(ha_metrics)

    def may_remediate(self) -> bool:
        token = self.elector.token
        return token is not None and token == self._acting_token

    @property
    def acting_token(self) -> int | None:
        """The fencing token of the leadership this instance acts under, or None."""
        return self._acting_token if self.may_remediate() else None

    def lease_window_ms(self) -> int:
        """Milliseconds before the local deadline of the leadership this instance acts
        under; 0 when it does not act (a write is authorized at most this far ahead)."""
        lease = self.elector.lease()
        if lease is None or lease.token != self._acting_token:
            return 0
        return max(0, int((lease.deadline - self.elector.monotonic()) * 1000))

    def status(self) -> dict[str, Any]:
        return {**self.runtime.status(), "acting": self.may_remediate()}

    def start(self, hooks: HaHooks) -> asyncio.Task[None]:
        """Campaign from now on; returns the loop heartbeat task (the service cancels it)."""
        runtime = self.runtime
        # Read at every scrape: the lease can end between two runs.
        self.leader_gauge.set_function(lambda: 1.0 if self.may_remediate() else 0.0)
        lease_s = runtime.settings.config.lease_ttl_s
        self._beat = time.monotonic()
        self.elector.healthy = lambda: time.monotonic() - self._beat < lease_s
        self.elector.add_listener(lambda e: self._in_loop(self._on_leadership, hooks, e))

        # Redis lost its data (or this is the deployment's first start): the operator state
        # is read again at once, so a lost one is written back within the recovery wait.
        def reread_operator_state(_epoch: str) -> bool:
            self._in_loop(hooks.refresh_operator)
            return True

        self.elector.add_epoch_listener(reread_operator_state)
        runtime.conn.on_state(lambda up, err: self._in_loop(self._on_redis_state, hooks, up, err))
        if not runtime.conn.up and runtime.conn.last_error is not None:
            self._on_redis_state(hooks, False, runtime.conn.last_error)  # already down at start
        task = asyncio.create_task(self._heartbeat(), name="ha-heartbeat")
        self.elector.start()
        return task

    async def close(self, timeout_s: float) -> bool:
        return await release(self.runtime, timeout_s)

    def step_down(
        self, hold_s: float, on_change: Callable[[str, str, Any, Any], None]
    ) -> dict[str, Any]:
        was_leader = self.elector.step_down("operator_step_down", release=True, hold_s=hold_s)
        instance = self.elector.instance_id
        log_event(
            log,
            "HA_STEP_DOWN",
            logging.WARNING,
            instance=instance,
            was_leader=was_leader,
            hold_s=hold_s,
        )
        on_change("control", "ha_leader", was_leader, False)
        return {"instance_id": instance, "was_leader": was_leader, "hold_s": hold_s}

    # --- internals -----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Tells the elector the loop is alive: a wedged leader stops renewing its lease."""
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)

    def _in_loop(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop.is_closed():
            return
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(fn, *args)

    def _on_leadership(self, hooks: HaHooks, event: LeadershipEvent) -> None:
        self.ha_metrics.leadership_changes.labels(change=event.kind).inc()
        # "fence" = the fencing token ("token" would be masked as a secret in logs and audit)
        fields: dict[str, Any] = {"instance": event.instance_id, "fence": event.token}
        if event.kind == "acquired":
            self._acting_token = None
            log_event(
                log,
                "HA_LEADER_ACQUIRED",
                logging.WARNING,
                **fields,
                lease_ttl_s=self.runtime.settings.config.lease_ttl_s,
            )
            hooks.spawn(self._take_over(hooks, event.token), "ha-take-over")
        else:
            if self._acting_token == event.token:
                self._acting_token = None
            log_event(log, "HA_LEADER_LOST", logging.WARNING, **fields, reason=event.reason)
        hooks.audit_event(f"HA_LEADER_{event.kind.upper()}", {**fields, "reason": event.reason})

    async def _take_over(self, hooks: HaHooks, token: int) -> None:
        """A new leadership acts only on a snapshot taken after it began."""
        elector = self.elector
        while not hooks.stopping() and elector.token == token:
            try:
                await hooks.snapshot()
            except Exception:  # logged by snapshot(); try again while still leader
                await asyncio.sleep(0.5)
                continue
            if elector.token == token:
                self._acting_token = token
                fields = {"instance": elector.instance_id, "fence": token}
                log_event(log, "HA_LEADER_ACTING", logging.WARNING, **fields)
                hooks.audit_event("HA_LEADER_ACTING", fields)
                hooks.on_acting()  # a run now; the dead-man countdown is handed over at once
            return

    def _on_redis_state(self, hooks: HaHooks, up: bool, error: str | None) -> None:
        redis = self.runtime.conn.display_url
        if up:
            log_event(log, "HA_REDIS_UP", redis=redis)
            hooks.refresh_operator()  # and write a rollback held here meanwhile
        else:
            log_event(
                log,
                "HA_REDIS_DOWN",
                logging.WARNING,
                redis=redis,
                error=error,
                effect="no remediation until Redis answers; detection continues",
            )
        hooks.audit_event("HA_REDIS_UP" if up else "HA_REDIS_DOWN", {"error": error})


async def release(runtime: HaRuntime, timeout_s: float) -> bool:
    """Stop campaigning and release the lease; True when that was done in ``timeout_s``.

    The work runs in a daemon thread (not the loop's executor, which the interpreter
    would wait for at exit): past ``timeout_s`` it is left to finish or die with the
    process, and ``HA_CLOSE_TIMEOUT`` is logged. Called whether the service started
    or not: the runtime campaigns (and holds Redis) from before the start."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    def work() -> None:
        try:
            runtime.close(join_s=timeout_s)
        except Exception:
            log.exception("HA_CLOSE_ERROR")
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(finished)

    threading.Thread(target=work, name="grinder-ha-close", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except TimeoutError:
        log_event(
            log,
            "HA_CLOSE_TIMEOUT",
            logging.WARNING,
            after_s=round(timeout_s, 2),
            redis=runtime.conn.display_url,
            effect="the lease ends with its TTL",
        )
        return False
    return True
