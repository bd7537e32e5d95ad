"""``grinder sim serve`` started as its own process, as an operator starts it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def simulator_process(env: Mapping[str, str], *args: str) -> Iterator[str]:
    """The simulator on a free loopback port; yields its base URL, stops it at the end."""
    argv = [sys.executable, "-m", "grinder.cli", "sim", "serve", "--port", "0", *args]
    proc = subprocess.Popen(
        argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    url = None
    for _ in range(50):
        found = re.search(r"on (http://\S+)", proc.stdout.readline())
        if found:
            url = found.group(1)
            break
    try:
        assert url is not None, "the simulator did not say where it listens"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
