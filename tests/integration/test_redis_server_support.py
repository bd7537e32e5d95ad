"""The tests' ``redis-server`` (``tests/support/redis_server.py``) when the free port it was
given is taken before it binds (another test, another worker): it starts on another port, and
it never takes another server on that port for its own."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]


def test_a_port_taken_before_the_first_start_is_replaced_by_a_free_one(
    tmp_path: Path, require_tool: Callable[[str, str], str]
) -> None:
    binary = require_tool("redis-server", "redis-server")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        server = RedisServer(binary, tmp_path / "redis", port)
        try:
            server.start()
            assert server.port != port
            assert server.client().set("k", "v")
            assert server.proc is not None
            assert server.client().info("server")["process_id"] == server.proc.pid
            assert "Address already in use" in (tmp_path / "redis" / "redis-1.log").read_text()
        finally:
            server.stop()


def test_another_server_on_the_port_is_not_taken_for_its_own(
    tmp_path: Path, require_tool: Callable[[str, str], str]
) -> None:
    binary = require_tool("redis-server", "redis-server")
    first = RedisServer(binary, tmp_path / "first", Cli.free_port())
    first.start()
    second = RedisServer(binary, tmp_path / "second", first.port)
    try:
        second.start()
        assert second.port != first.port
        assert second.proc is not None
        assert second.client().info("server")["process_id"] == second.proc.pid
    finally:
        second.stop()
        first.stop()
