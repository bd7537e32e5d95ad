"""The project's commands in subprocesses, as an operator runs them (``Cli``), and the system
tools a test starts (``require_tool``: fails in CI without them, skips elsewhere)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class Cli:
    """The project's commands in subprocesses, as an operator runs them.

    Their environment is the test process's without what steers the service from outside (the
    safety gates, state and artifact paths, venue, HA and exchange credentials), so a variable
    set in the developer's shell cannot change what a test sees.
    """

    STEERING_PREFIXES = ("GRINDER_", "RECONCILE_", "BUDGET_")
    STEERING = frozenset({"ARMED", "ALLOW_MAINNET_TRADE", "BINANCE_API_KEY", "BINANCE_API_SECRET"})
    # The simulator's credentials stay: an in-process simulator of the test reads them too.
    KEPT = frozenset({"GRINDER_SIM_API_KEY", "GRINDER_SIM_API_SECRET"})

    repo = REPO

    def env(
        self, *, scripts: bool = False, runtime_dir: Path | None = None, **extra: str
    ) -> dict[str, str]:
        """The clean environment. ``PYTHONPATH`` is the project's ``src`` (with ``scripts`` the
        checkout too, for ``-m scripts.…``); ``runtime_dir`` becomes ``XDG_RUNTIME_DIR`` (where
        the control socket goes); ``extra`` is set last."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k in self.KEPT or not (k in self.STEERING or k.startswith(self.STEERING_PREFIXES))
        }
        paths = [REPO / "src", REPO] if scripts else [REPO / "src"]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        if runtime_dir is not None:
            env["XDG_RUNTIME_DIR"] = str(runtime_dir)
        env.update(extra)
        return env

    def run(
        self,
        module: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
        python: str = sys.executable,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m module args…`` to its end: output captured as text, no terminal on stdin,
        a non-zero exit returned rather than raised. ``env`` defaults to ``self.env()``."""
        return subprocess.run(
            [python, "-m", module, *args],
            cwd=cwd,
            env=dict(self.env() if env is None else env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @staticmethod
    def free_port() -> int:
        """A loopback TCP port nothing listens on right now."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    @staticmethod
    def sim_argv(port: int, symbols: str) -> list[str]:
        """``grinder sim serve`` on loopback ``port`` listing ``symbols`` (comma-separated);
        it answers ``/fapi/v1/ping`` once up (``wait_http``)."""
        return [
            sys.executable,
            "-m",
            "grinder.cli",
            "sim",
            "serve",
            "--port",
            str(port),
            "--symbols",
            symbols,
        ]

    @staticmethod
    def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
        """Until ``url`` answers 200; fails with the tail of ``log`` if ``proc`` exits first or
        the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} not ready\n{log.read_text(errors='replace')[-3000:]}")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/bin", "/usr/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str, package: str) -> str:
    found = find_tool(name)
    if found:
        return found
    message = (
        f"{name} not found: install Debian's {package!r} package "
        "(bin/test does it with bin/ensure-debian-packages)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
