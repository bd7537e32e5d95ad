"""A bot that keeps an expected-state file live."""

from __future__ import annotations

import threading
from pathlib import Path

from grinder.state.recorder import ExpectedRecorder


class RecorderBot:
    """A bot, as far as the service's gate E sees it: an ``ExpectedRecorder`` on ``db`` (created
    if absent) that heartbeats at once and then every ``every_s`` from a thread of the test
    process, until ``stop()``; while ``paused`` is set it is silent. ``recorder`` records what
    the bot places."""

    def __init__(self, db: Path, every_s: float = 1.0) -> None:
        self.recorder = ExpectedRecorder(db)
        self.recorder.heartbeat()
        self.every_s = every_s
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recorder-bot", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if not self.paused.is_set():
                self.recorder.heartbeat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.recorder.close()
