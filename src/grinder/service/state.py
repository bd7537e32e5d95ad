"""Where the service's expected state comes from: memory, a bot's SQLite file, or Redis,
and whether a bot keeps it (its heartbeat: gate E of remediation)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grinder.clock import Clock
from grinder.ha.connection import RedisUnavailable
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.reconcile.gates import expected_state_detail
from grinder.reconcile.types import ExpectedOrder
from grinder.reporting.logs import log_event
from grinder.state.expected import NEVER, ExpectedStore, MemoryExpectedStore
from grinder.state.redis_store import RedisExpectedStore
from grinder.state.sqlite import ExpectedStoreError, SqliteExpectedStore

log = logging.getLogger("grinder.service")


@dataclass
class ExpectedSource:
    """The expected store detection reads, and who maintains it.

    ``memory``: an in-process store (the service's own, or a bot's in the same
    process). ``sqlite``: a file a bot in another process writes; the service
    only reads it, refreshing its mirror once per cycle. ``redis``: the shared
    expected state of an HA deployment (a bot writes it, every instance reads
    it); a refresh that fails keeps the last mirror, so detection goes on.
    """

    store: ExpectedStore
    memory: MemoryExpectedStore | None = None
    sqlite: SqliteExpectedStore | None = None
    redis: RedisExpectedStore | None = None
    on_refresh_error: Callable[[Exception], None] | None = None
    _failing: bool = False

    @property
    def kind(self) -> str:
        if self.redis is not None:
            return "redis"
        return "sqlite" if self.sqlite is not None else "memory"

    def refresh(self) -> None:
        """Pick up what another process wrote since the last cycle."""
        if self.sqlite is not None:
            self.sqlite.refresh()
        if self.redis is not None:
            try:
                self.redis.refresh()
            except (RedisUnavailable, ExpectedStoreError) as exc:
                if self.on_refresh_error is not None:
                    self.on_refresh_error(exc)
                if not self._failing:
                    log.warning(
                        "EXPECTED_REFRESH_FAILED store=redis error=%s (keeping the last "
                        "known expected state: %d orders)",
                        " ".join(str(exc).split()),
                        len(self.redis),
                    )
                self._failing = True
                return
            if self._failing:
                log.info("EXPECTED_REFRESH_OK store=redis orders=%d", len(self.redis))
            self._failing = False

    def read_order(self, client_order_id: str) -> ExpectedOrder | None:
        """The bot's record of one order as its store holds it now -- not the mirror of
        the last refresh (a cancel is confirmed with it right before it is sent)."""
        if self.sqlite is not None:
            return self.sqlite.read_order(client_order_id)
        if self.redis is not None:
            return self.redis.read_order(client_order_id)
        return self.store.get_order(client_order_id)

    def heartbeat_age_s(self, now_ms: int) -> float:
        """Seconds since a bot last wrote the expected state (``math.inf``: never), as of
        the last refresh plus the time since: the input of gate E."""
        if self.redis is not None:
            return self.redis.heartbeat_age_s(now_ms)
        if self.sqlite is not None:
            return self.sqlite.heartbeat_age_s(now_ms)
        return self.memory.heartbeat_age_s(now_ms) if self.memory is not None else NEVER

    @property
    def where(self) -> str:
        if self.redis is not None:
            return self.redis.where
        if self.sqlite is not None:
            return f"expected-state file {self.sqlite.path}"
        return "the service's memory (written only by a bot in its own process)"

    def hint(self, age_s: float, max_age_s: float) -> str | None:
        """What to do while gate E is closed (None while it is open)."""
        if age_s <= max_age_s:
            return None
        if self.memory is not None:
            return (
                "no bot writes the service's in-memory expected state (it is only live with a "
                "bot in the service's own process): give the file a bot records into "
                "(--expected-db) or run with Redis (--redis-url)"
            )
        if math.isinf(age_s):
            if self.sqlite is not None:
                return (
                    "no bot heartbeat in the file: no bot has written it since heartbeats "
                    "exist (a file written by an older recorder, or only adopted, has none); "
                    "the bot's ExpectedRecorder stamps one with every call and heartbeat()"
                )
            return (
                "no bot heartbeat in Redis: the bot's RedisExpectedStore(conn, bot=True) "
                "stamps one with every write and heartbeat()"
            )
        return (
            "the bot stopped writing: is it running? It must call heartbeat() at least every "
            f"{max_age_s:g} s (docs/EXPECTED_STATE.md)"
        )

    def status(self, now_ms: int, max_age_s: float) -> dict[str, Any]:
        """Gate E's input for ``/status`` (and ``grinder gates``): JSON has no infinity, so
        a state never written by a bot shows ``heartbeat_age_s`` null."""
        age = self.heartbeat_age_s(now_ms)
        return {
            "source": self.kind,
            "where": self.where,
            "heartbeat_age_s": None if math.isinf(age) else round(age, 3),
            "max_age_s": max_age_s,
            "live": age <= max_age_s,
            "detail": expected_state_detail(age, max_age_s),
            "hint": self.hint(age, max_age_s),
        }

    def evict(self, now_ms: int) -> None:
        """Drop ended orders past their TTL (the writer's job for a shared store)."""
        if self.memory is not None:
            self.memory.evict_expired(now_ms)

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()


class ExpectedWatch:
    """Gate E as the running service reads it: the bot's heartbeat age now, ``/status``'s
    view of it, and a log line when the gate opens or closes (``observe``)."""

    def __init__(self, source: ExpectedSource, config: ReconcileConfig, clock: Clock) -> None:
        self.source = source
        self.config = config
        self.clock = clock
        self._live: bool | None = None
        """What the last ``observe`` logged (None: nothing yet; the first logs either way)."""

    def heartbeat_age(self) -> float:
        """Seconds since a bot last wrote the expected state (``math.inf``: never): what
        gate E, the gauge and ``/status`` read."""
        return self.source.heartbeat_age_s(self.clock())

    def status(self) -> dict[str, Any]:
        """Gate E's input as ``/status`` shows it (``grinder gates`` evaluates it)."""
        return self.source.status(self.clock(), self.config.expected_heartbeat_max_age_s)

    def observe(self) -> None:
        """Log when gate E opens or closes (and, at start, the state it starts in)."""
        source = self.source
        max_age = self.config.expected_heartbeat_max_age_s
        age = self.heartbeat_age()
        live = age <= max_age
        if live == self._live:
            return
        self._live = live
        shown = "inf" if math.isinf(age) else f"{age:.1f}"
        if live:
            log_event(
                log,
                "EXPECTED_STATE_LIVE",
                source=source.kind,
                where=source.where,
                heartbeat_age_s=shown,
            )
            return
        log_event(
            log,
            "EXPECTED_STATE_STALE",
            logging.WARNING,
            source=source.kind,
            where=source.where,
            heartbeat_age_s=shown,
            max_age_s=f"{max_age:g}",
            blocks="expected_state_stale",
            hint=source.hint(age, max_age),
        )


def open_expected(
    path: Path | None,
    redis: RedisExpectedStore | None = None,
    *,
    create: bool = False,
    where: str = "--expected-db",
) -> ExpectedSource:
    """A SQLite file when ``path`` is given, else the Redis store when given, else memory.

    A file that does not exist is a ``ConfigError`` naming ``where`` unless ``create``
    (``--create-expected-db``): a typo must not become an empty file that says "the bot
    expects nothing". A created file has no bot heartbeat, so gate E stays closed until a
    bot writes it.
    """
    if path is not None:
        if not create and not path.exists():
            raise ConfigError(missing_expected_db(path, where))
        existed = path.exists()
        sqlite = SqliteExpectedStore(path)  # only read here (writable to initialise a new one)
        if not existed:
            log.warning("EXPECTED_DB_CREATED path=%s (no bot has written it yet)", path)
        return ExpectedSource(sqlite, sqlite=sqlite)
    if redis is not None:
        return ExpectedSource(redis, redis=redis)
    memory = MemoryExpectedStore()
    return ExpectedSource(memory, memory=memory)


def missing_expected_db(path: Path, where: str) -> str:
    """The one line for an expected-state file that does not exist."""
    return (
        f"{where}: {path} does not exist (the bot's recorder creates it; to start with an "
        "empty one on purpose: --create-expected-db, or grinder expected adopt)"
    )
