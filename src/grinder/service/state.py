"""Where the service's expected state comes from: memory, a bot's SQLite file, or Redis."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grinder.ha.connection import RedisUnavailable
from grinder.reconcile.types import ExpectedOrder
from grinder.state.expected import ExpectedStore, MemoryExpectedStore
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

    def evict(self, now_ms: int) -> None:
        """Drop ended orders past their TTL (the writer's job for a shared store)."""
        if self.memory is not None:
            self.memory.evict_expired(now_ms)

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()


def open_expected(path: Path | None, redis: RedisExpectedStore | None = None) -> ExpectedSource:
    """A SQLite file when ``path`` is given, else the Redis store when given, else memory."""
    if path is not None:
        sqlite = SqliteExpectedStore(path)  # created if the bot has not yet; only read here
        return ExpectedSource(sqlite, sqlite=sqlite)
    if redis is not None:
        return ExpectedSource(redis, redis=redis)
    memory = MemoryExpectedStore()
    return ExpectedSource(memory, memory=memory)
