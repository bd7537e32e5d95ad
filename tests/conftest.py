"""Fixtures shared by the unit, integration and HA tests.

Test modules are imported by path (``--import-mode=importlib``) and do not import one another:
what several of them share lives in ``tests/support`` (plain functions and classes) and is
offered here as fixtures where tests ask for it by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.recorder import RecorderBot

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "exchange-corpus" / "binance-usdm"


def pytest_configure(config: pytest.Config) -> None:
    """In CI the wire corpus must be there: its tests would otherwise skip, not fail."""
    if os.environ.get("CI") == "true" and not CORPUS.is_dir():
        raise pytest.UsageError(
            f"Binance wire corpus not found at {CORPUS} (CI=true): check out ../shared "
            "next to the project"
        )


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


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


def _find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/bin", "/usr/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _require_tool(name: str, package: str) -> str:
    found = _find_tool(name)
    if found:
        return found
    message = (
        f"{name} not found: install Debian's {package!r} package "
        "(bin/test does it with bin/ensure-debian-packages)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str, str], str]:
    """``require_tool(name, debian_package)``: the path of a system tool a test starts; without
    it the test fails in CI (``CI=true``) and is skipped elsewhere."""
    return _require_tool


# --- a bot that keeps an expected-state file live ---------------------------------------------


@pytest.fixture(scope="session")
def recorder_bot() -> type[RecorderBot]:
    """``recorder_bot(db, every_s=1.0)``: a ``RecorderBot`` (the caller stops it)."""
    return RecorderBot


# --- a real Redis server ------------------------------------------------------------------------


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1:<port>, data in ``directory``.

    Without ``config_file`` it runs without persistence (``--save "" --appendonly no``), as the
    HA tests of data loss require. With ``config_file`` the server reads that file first (a
    deployment's settings, persistence included); the port, the address, the directory and the
    log file stay the test's. ``password`` sets ``requirepass`` (and goes into ``url``).
    ``kill()`` / ``restart()`` take the server down and bring it back on the same port.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        port: int,
        *,
        config_file: Path | None = None,
        password: str | None = None,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.config_file = config_file
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **kw: Any) -> redis.Redis:
        options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 2, **kw}
        return redis.Redis(port=self.port, password=self.password, **options)

    def start(self, timeout_s: float = 10.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = [self.binary]
        if self.config_file is not None:
            argv.append(str(self.config_file))
        argv += ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.config_file is None:
            argv += ["--save", "", "--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        argv += [
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / f"redis-{self.starts}.log"),
            "--daemonize",
            "no",
        ]
        out = self.directory / f"redis-{self.starts}.out"  # what it says before its log opens
        with out.open("wb") as sink:
            self.proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None:
                    said = out.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{said}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9``: without persistence everything it held is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: Redis hangs (accepts connections, answers nothing) until ``resume()``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def redis_servers(
    tmp_path: Path, cli: Cli, require_tool: Callable[[str, str], str]
) -> Iterator[Callable[..., RedisServer]]:
    """``redis_servers(*, config_file=None, password=None)``: a started Debian
    ``redis-server`` (see ``RedisServer``) on a free loopback port, its data under the test's
    ``tmp_path``; every one is stopped after the test. Without the binary the test fails in CI
    (``CI=true``) and is skipped elsewhere (bin/test installs it)."""
    binary = require_tool("redis-server", "redis-server")
    started: list[RedisServer] = []

    def start(*, config_file: Path | None = None, password: str | None = None) -> RedisServer:
        name = "redis" if not started else f"redis-{len(started) + 1}"
        server = RedisServer(
            binary, tmp_path / name, cli.free_port(), config_file=config_file, password=password
        )
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def redis_server(redis_servers: Callable[..., RedisServer]) -> RedisServer:
    """One ``redis-server`` without persistence and without a password (the HA tests')."""
    return redis_servers()


# --- the Binance wire corpus -----------------------------------------------------------------


def _read_corpus(name: str) -> Any:
    data = json.loads((CORPUS / name).read_text(encoding="utf-8"))
    if isinstance(data, dict) and "stream" in data and "data" in data:
        return data["data"]  # a combined-stream envelope: the event inside
    return data


@pytest.fixture
def corpus() -> Callable[[str], Any]:
    """``corpus(name)``: one file of the Binance wire corpus, a combined-stream envelope
    unwrapped. The test is skipped where the corpus is not checked out next to the project."""
    if not CORPUS.is_dir():
        pytest.skip(f"Binance wire corpus not found at {CORPUS}")
    return _read_corpus


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def _shape_diff(
    ours: Any,
    theirs: Any,
    path: str = "",
    *,
    absent_ok: frozenset[str] = frozenset(),
    extra_ok: frozenset[str] = frozenset(),
    loose_types: frozenset[str] = frozenset(),
) -> list[str]:
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out: list[str] = []
        for key, value in theirs.items():
            if key not in ours:
                if key not in absent_ok:
                    out.append(f"{path}.{key} missing")
            elif key not in loose_types:
                out += _shape_diff(
                    ours[key],
                    value,
                    f"{path}.{key}",
                    absent_ok=absent_ok,
                    extra_ok=extra_ok,
                    loose_types=loose_types,
                )
        out += [f"{path}.{k} extra" for k in ours if k not in theirs and k not in extra_ok]
        return out
    if isinstance(theirs, list) and isinstance(ours, list):
        if theirs and ours:
            return _shape_diff(
                ours[0],
                theirs[0],
                f"{path}[0]",
                absent_ok=absent_ok,
                extra_ok=extra_ok,
                loose_types=loose_types,
            )
        return []
    return [] if _kind(ours) == _kind(theirs) else [f"{path}: {_kind(ours)} != {_kind(theirs)}"]


@pytest.fixture
def shape_diff() -> Callable[..., list[str]]:
    """``shape_diff(ours, theirs, *, absent_ok=, extra_ok=, loose_types=)``: the key and JSON
    type differences of two payloads (lists: their first items). Keys in ``absent_ok`` may be
    missing from ours, those in ``extra_ok`` may be ours only, those in ``loose_types`` are not
    compared further."""
    return _shape_diff
