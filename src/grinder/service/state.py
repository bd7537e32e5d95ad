"""Where the service's expected state comes from: memory, or a bot's SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grinder.state.expected import MemoryExpectedStore


@dataclass
class ExpectedSource:
    """The expected store plus what the service does with it each cycle."""

    store: MemoryExpectedStore
    path: Path | None = None

    def refresh(self) -> None:
        """Pick up what another process wrote since the last cycle."""
        refresh = getattr(self.store, "refresh", None)
        if refresh is not None:
            refresh()

    def store_evict(self, now_ms: int) -> None:
        if self.path is None:
            self.store.evict_expired(now_ms)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def open_expected(path: Path | None) -> ExpectedSource:
    if path is None:
        return ExpectedSource(MemoryExpectedStore())
    from grinder.state.sqlite import SqliteExpectedStore

    return ExpectedSource(SqliteExpectedStore(path, readonly=True), path)  # type: ignore[arg-type]
