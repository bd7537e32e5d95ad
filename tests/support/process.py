"""The service started in the background, as an operator starts it, handed back once ready."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def start_until_ready(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float = 30.0
) -> subprocess.Popen[str]:
    """``argv`` in the background (stdout and stderr piped, as text), returned once it
    printed its ``ready:`` line (or after ``timeout_s``)."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        if line.startswith("ready:") or time.monotonic() > deadline:
            break
    return proc
