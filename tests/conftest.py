"""Fixtures shared by the unit, integration and HA tests.

Test modules are imported by path (``--import-mode=importlib``) and do not import one another:
what several of them share lives in ``tests/support`` (plain functions and classes) and is
offered here as fixtures where tests ask for it by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.cli import require_tool as require_tool_or_skip
from tests.support.recorder import RecorderBot
from tests.support.redis_server import RedisServer
from tests.support.shapes import shape_diff as shape_diff_of

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "exchange-corpus" / "binance-usdm"


def pytest_configure(config: pytest.Config) -> None:
    """In CI the wire corpus must be there: its tests would otherwise skip, not fail."""
    if os.environ.get("CI") == "true" and not CORPUS.is_dir():
        raise pytest.UsageError(
            f"Binance wire corpus not found at {CORPUS} (CI=true): check out ../shared "
            "next to the project"
        )


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def require_tool() -> Callable[[str, str], str]:
    """``require_tool(name, debian_package)``: the path of a system tool a test starts; without
    it the test fails in CI (``CI=true``) and is skipped elsewhere."""
    return require_tool_or_skip


# --- a bot that keeps an expected-state file live ---------------------------------------------


@pytest.fixture(scope="session")
def recorder_bot() -> type[RecorderBot]:
    """``recorder_bot(db, every_s=1.0)``: a ``RecorderBot`` (the caller stops it)."""
    return RecorderBot


# --- a real Redis server ------------------------------------------------------------------------


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


@pytest.fixture
def shape_diff() -> Callable[..., list[str]]:
    """``shape_diff(ours, theirs, *, absent_ok=, extra_ok=, loose_types=)``: the key and JSON
    type differences of two payloads (lists: their first items). Keys in ``absent_ok`` may be
    missing from ours, those in ``extra_ok`` may be ours only, those in ``loose_types`` are not
    compared further."""
    return shape_diff_of
