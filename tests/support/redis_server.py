"""A real ``redis-server`` process for the tests (``RedisServer``)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.support.cli import Cli


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
        self.answered = False
        """Whether it has answered once (its port is known to the test from then on)."""

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
                    # Its own process answering, not another server that took the port.
                    if client.info("server")["process_id"] == self.proc.pid:
                        self.answered = True
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None:
                    if not self.answered and self._port_was_taken():
                        # Another process bound the free port first: a new one, before anyone
                        # has been told this one (after the first start the port stays).
                        self.port = Cli.free_port()
                        self.start(timeout_s)
                        return
                    said = out.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{said}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def _port_was_taken(self) -> bool:
        log = self.directory / f"redis-{self.starts}.log"
        said = log.read_text(errors="replace") if log.exists() else ""
        return "Address already in use" in said

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
