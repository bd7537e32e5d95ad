"""Where the service's expected state comes from: memory, or a bot's SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grinder.state.expected import ExpectedStore, MemoryExpectedStore
from grinder.state.sqlite import SqliteExpectedStore


@dataclass
class ExpectedSource:
    """The expected store detection reads, and who maintains it.

    ``memory``: an in-process store (the service's own, or a bot's in the same
    process). ``sqlite``: a file a bot in another process writes; the service
    only reads it, refreshing its mirror once per cycle.
    """

    store: ExpectedStore
    memory: MemoryExpectedStore | None = None
    sqlite: SqliteExpectedStore | None = None

    def refresh(self) -> None:
        """Pick up what another process wrote since the last cycle."""
        if self.sqlite is not None:
            self.sqlite.refresh()

    def evict(self, now_ms: int) -> None:
        """Drop ended orders past their TTL (the writer's job for a shared file)."""
        if self.memory is not None:
            self.memory.evict_expired(now_ms)

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()


def open_expected(path: Path | None) -> ExpectedSource:
    if path is None:
        memory = MemoryExpectedStore()
        return ExpectedSource(memory, memory=memory)
    sqlite = SqliteExpectedStore(path)  # created if the bot has not yet; only read here
    return ExpectedSource(sqlite, sqlite=sqlite)
