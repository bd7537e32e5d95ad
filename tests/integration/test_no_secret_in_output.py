"""No credential reaches any output.

Canary secrets go everywhere an operator can give one: ``BINANCE_API_KEY`` / ``_SECRET`` and
their ``_FILE`` variants, ``GRINDER_SIM_API_KEY`` / ``_SECRET``, passwords in ``--redis-url``,
``GRINDER_REDIS_URL``, ``--venue-url``, ``--metrics-url`` and ``--prometheus-url``. The service
and every command run as an operator runs them -- real processes, a real ``redis-server`` with
``requirepass``, the simulator over HTTP -- through faults (Redis killed, a venue that refuses
connections, 5xx answers, dropped and garbled streams, a wrong Redis password) and bad input
(malformed URLs, bad flags, conflicting credentials). Then every byte they wrote is scanned:
stdout, stderr, the log file, the run directory, the audit trail, the metrics files, the
control socket's and the metrics port's answers, and what the service keeps in Redis.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[2]

BINANCE_KEY = "cnryEnvApiKey4Q7x"
BINANCE_SECRET = "cnryEnvApiSecret9Z2w"
FILE_KEY = "cnryFileApiKey3M8v"  # also the simulator's key (GRINDER_SIM_API_KEY)
FILE_SECRET = "cnryFileApiSecret6W1u"  # also the simulator's secret (GRINDER_SIM_API_SECRET)
REDIS_PW = "cnryRedisPass5K9t"
WRONG_REDIS_PW = "cnryRedisWrong2T4s"
DOWN_REDIS_PW = "cnryRedisDown8H3r"
VENUE_PW = "cnryVenuePass7D5q"
METRICS_PW = "cnryMetricsPass1F6p"
PROMETHEUS_PW = "cnryPromPass4L2n"
BAD_URL_PW = "cnryBadUrlPass3N7m"

CANARIES = (
    BINANCE_KEY,
    BINANCE_SECRET,
    FILE_KEY,
    FILE_SECRET,
    REDIS_PW,
    WRONG_REDIS_PW,
    DOWN_REDIS_PW,
    VENUE_PW,
    METRICS_PW,
    PROMETHEUS_PW,
    BAD_URL_PW,
)
BASIC_AUTH = {"venue": VENUE_PW, "m": METRICS_PW, "p": PROMETHEUS_PW}
"""The user names of the URLs above: their ``Authorization: Basic`` form is a needle too."""


def needles() -> dict[str, bytes]:
    found = {c: c.encode() for c in CANARIES}
    for user, password in BASIC_AUTH.items():
        pair = base64.b64encode(f"{user}:{password}".encode())
        found[f"basic auth {user}"] = pair
    return found


@dataclass
class Outputs:
    """Every output collected in memory (the files are read at the end, from disk)."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> str:
        self.texts.append((where, text))
        return text

    def run(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        self.add(f"{what}: stdout", proc.stdout)
        self.add(f"{what}: stderr", proc.stderr)

    def leaks(
        self, root: Path, skip: Iterable[Path], extra: Iterable[tuple[str, bytes]]
    ) -> list[tuple[str, str]]:
        """``(where, needle)`` of every canary found in the outputs, the files under ``root``
        (but ``skip``: the secrets given as input, redis-server's own files) and ``extra``."""
        skipped = [p.resolve() for p in skip]
        blobs = [(w, t.encode("utf-8", "replace")) for w, t in self.texts] + list(extra)
        files = 0
        for path in sorted(root.rglob("*")):
            if not path.is_file() or any(path.resolve().is_relative_to(s) for s in skipped):
                continue
            blobs.append((str(path.relative_to(root)), path.read_bytes()))
            files += 1
        assert files > 0
        return [
            (where, name) for where, blob in blobs for name, n in needles().items() if n in blob
        ]


def unix_http(path: Path, method: str, route: str, body: dict[str, Any] | None = None) -> str:
    """One raw HTTP/1.0 exchange on the control socket: the service's answer, byte for byte."""
    payload = json.dumps(body).encode() if body is not None else b""
    request = (
        f"{method} {route} HTTP/1.0\r\nHost: grinder\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def http_text(url: str, body: dict[str, Any] | None = None, *, method: str = "") -> str:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read().decode()
    except urllib.error.HTTPError as exc:  # /readyz answers 503 while Redis is down
        return exc.read().decode()


def redis_contents(client: Any) -> bytes:
    """Every key and value the service and the commands left in Redis."""
    readers: dict[str, Callable[[str], Any]] = {
        "string": client.get,
        "hash": client.hgetall,
        "set": client.smembers,
        "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        "list": lambda k: client.lrange(k, 0, -1),
    }
    out: list[str] = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        read = readers.get(kind)
        out.append(f"{key} {kind} {read(key) if read else '?'!r}")
    return "\n".join(out).encode()


def with_env(base: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """``base`` with ``changes`` applied; a None value unsets the variable."""
    env = dict(base)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def secret_files(tmp_path: Path) -> dict[str, str]:
    """``BINANCE_API_KEY_FILE`` / ``BINANCE_API_SECRET_FILE`` (the simulator's credentials)."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "key").write_text(FILE_KEY + "\n")
    (folder / "secret").write_text(FILE_SECRET + "\n")
    return {
        "BINANCE_API_KEY_FILE": str(folder / "key"),
        "BINANCE_API_SECRET_FILE": str(folder / "secret"),
    }


SIM_CREDENTIALS = {"GRINDER_SIM_API_KEY": FILE_KEY, "GRINDER_SIM_API_SECRET": FILE_SECRET}
ENV_CREDENTIALS = {"BINANCE_API_KEY": BINANCE_KEY, "BINANCE_API_SECRET": BINANCE_SECRET}


def test_a_running_service_and_every_operator_command_never_show_a_secret(
    tmp_path: Path, cli: Any, redis_servers: Callable[..., Any]
) -> None:
    redis = redis_servers(password=REDIS_PW)
    files = secret_files(tmp_path)
    out = Outputs()
    sim_port, metrics_port, closed = cli.free_port(), cli.free_port(), cli.free_port()
    venue_url = f"http://venue:{VENUE_PW}@127.0.0.1:{sim_port}"
    refusing_venue = f"http://venue:{VENUE_PW}@127.0.0.1:{closed}"
    metrics_url = f"http://m:{METRICS_PW}@127.0.0.1:{metrics_port}/metrics"
    prometheus_url = f"http://p:{PROMETHEUS_PW}@127.0.0.1:{closed}"
    base = cli.env(scripts=True, runtime_dir=tmp_path / "run", **SIM_CREDENTIALS)
    socket_path = tmp_path / "run" / "grinder" / "control.sock"
    artifacts = tmp_path / "artifacts"
    app_log = tmp_path / "app.log"
    procs: list[subprocess.Popen[bytes]] = []
    svc_out, svc_err = tmp_path / "service.out", tmp_path / "service.err"
    file_credentials: dict[str, str | None] = {
        **files,
        "BINANCE_API_KEY": None,
        "BINANCE_API_SECRET": None,
    }

    def grinder(
        *args: str, code: int | None = None, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        run_env = with_env({**base, **ENV_CREDENTIALS}, env)
        proc: subprocess.CompletedProcess[str] = cli.run(
            "grinder.cli", *args, env=run_env, cwd=tmp_path
        )
        out.run(proc, " ".join(args[:2]))
        if code is not None:
            assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        return proc

    try:
        sim_log = tmp_path / "sim.log"
        sim = subprocess.Popen(
            cli.sim_argv(sim_port, "BTCUSDT,ETHUSDT"),
            env=base,
            stdout=sim_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(sim)
        cli.wait_http(f"http://127.0.0.1:{sim_port}/fapi/v1/ping", sim, sim_log)
        svc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scripts.run_live_reconcile",
                "--venue",
                "testnet",
                "--venue-url",
                venue_url,
                "--redis-url",
                redis.url,
                "--instance-id",
                "canary-a",
                "--metrics-port",
                str(metrics_port),
                "--log-file",
                str(app_log),
            ],
            cwd=REPO,
            env={**base, **files, "GRINDER_ARTIFACTS_DIR": str(artifacts)},
            stdout=svc_out.open("wb"),
            stderr=svc_err.open("wb"),
        )
        procs.append(svc)
        cli.wait_http(f"http://127.0.0.1:{metrics_port}/readyz", svc, svc_err)

        # Faults: the venue answers 5xx (to the mark price a /position reads; only there, so
        # the service's own runs cannot use the faults up first), the stream is garbled,
        # dropped, its listen key expired.
        sim_control = f"http://127.0.0.1:{sim_port}/_sim"
        http_text(
            f"{sim_control}/faults/errors",
            {"count": 4, "status": 503, "paths": ["/fapi/v1/premiumIndex"]},
        )
        position = unix_http(socket_path, "GET", "/position?symbol=BTCUSDT")
        out.add("control /position (venue 503)", position)
        assert '"mark_price": null' in position
        http_text(f"{sim_control}/faults", None, method="DELETE")
        http_text(f"{sim_control}/ws/raw", {"text": "not json"})
        http_text(f"{sim_control}/ws/drop", {"mode": "abort"})
        http_text(f"{sim_control}/listen-keys/expire", {})
        # Redis goes away and comes back (the service reconnects with the password).
        redis.kill()
        wait_until(
            lambda: '"redis_up": false' in unix_http(socket_path, "GET", "/status"),
            "the service sees Redis down",
        )
        out.add("/readyz (Redis down)", http_text(f"http://127.0.0.1:{metrics_port}/readyz"))
        redis.start()
        wait_until(
            lambda: '"redis_up": true' in unix_http(socket_path, "GET", "/status"),
            "the service sees Redis up",
        )

        # The operator's commands, with every credential in their environment.
        status = grinder("control", "status", code=0)
        assert f"redis://:***@127.0.0.1:{redis.port}/0" in status.stdout
        grinder("control", "set", "dry_run", "true", code=0)
        grinder("control", "disarm", code=0)
        grinder("control", "reload", code=2)  # no --config: one error line
        chain = grinder(
            "gates",
            "--symbol",
            "BTCUSDT",
            "--position",
            "--qty",
            "0.01",
            "--venue-url",
            venue_url,
            "--metrics-url",
            metrics_url,
            "--json",
        )
        assert chain.returncode in (0, 1), chain.stderr
        context = "\n".join(json.loads(chain.stdout)["context"])
        assert f"mark price from http://venue:***@127.0.0.1:{sim_port})" in context
        assert f"metrics: http://m:***@127.0.0.1:{metrics_port}/metrics" in context
        refused = grinder(
            "gates",
            "--symbol",
            "BTCUSDT",
            "--position",
            "--qty",
            "0.01",
            "--venue-url",
            refusing_venue,
        )
        assert f"no mark price (http://venue:***@127.0.0.1:{closed}/" in refused.stdout
        stage1 = grinder(
            "ceremony",
            "check",
            "--stage",
            "1",
            "--metrics-url",
            metrics_url,
            "--prometheus-url",
            prometheus_url,
            "--log-file",
            str(app_log),
        )
        assert f"metrics:  http://m:***@127.0.0.1:{metrics_port}/metrics" in stage1.stdout
        stage4 = grinder(
            "ceremony",
            "check",
            "--stage",
            "4",
            "--metrics-url",
            metrics_url,
            "--prometheus-url",
            prometheus_url,
            "--json",
        )
        assert f"http://p:***@127.0.0.1:{closed}/api/v1/rules" in stage4.stdout
        adopted = grinder(
            "expected",
            "adopt",
            "--venue",
            "testnet",
            "--venue-url",
            venue_url,
            "--yes",
            code=0,
            GRINDER_REDIS_URL=redis.url,
            **file_credentials,
        )
        assert "Written:" in adopted.stdout
        rejected = grinder(
            "expected",
            "adopt",
            "--venue",
            "testnet",
            "--venue-url",
            venue_url,
            "--redis-url",
            redis.url,
            "--yes",
            code=1,
        )
        assert "(code -2015)" in rejected.stderr  # the simulator refuses the other key
        wrong = f"redis://:{WRONG_REDIS_PW}@127.0.0.1:{redis.port}/0"
        denied = grinder(
            "expected",
            "adopt",
            "--venue",
            "testnet",
            "--venue-url",
            venue_url,
            "--redis-url",
            wrong,
            "--yes",
            code=1,
            **file_credentials,
        )
        assert "AuthenticationError" in denied.stderr
        down = f"redis://:{DOWN_REDIS_PW}@127.0.0.1:{closed}/0"
        unreachable = grinder(
            "expected",
            "adopt",
            "--venue",
            "testnet",
            "--venue-url",
            venue_url,
            "--redis-url",
            down,
            "--yes",
            code=1,
            **file_credentials,
        )
        assert "ConnectionError" in unreachable.stderr

        # The control socket's and the metrics port's answers, byte for byte.
        for method, route, body in (
            ("GET", "/status", None),
            ("GET", "/position?symbol=BTCUSDT", None),
            ("POST", "/set", {"field": "nope", "value": 1}),
            ("POST", "/ha/step-down", {"hold_s": 0}),
        ):
            out.add(f"control {route}", unix_http(socket_path, method, route, body))
        for route in ("/metrics", "/healthz", "/readyz"):
            out.add(route, http_text(f"http://127.0.0.1:{metrics_port}{route}"))
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert procs[-1].returncode == 0, svc_err.read_text(errors="replace")[-3000:]

    run_dir = next(artifacts.glob("*/run_*"))
    venue_line = f"venue:             testnet (http://venue:***@127.0.0.1:{sim_port})"
    assert venue_line in svc_out.read_text()
    assert venue_line in (run_dir / "stdout.log").read_text()
    assert f"HA_REDIS_DOWN redis=redis://:***@127.0.0.1:{redis.port}/0" in app_log.read_text()
    assert "CONTROL_CHANGE" in (run_dir / "audit.jsonl").read_text()
    assert "STREAM_" in app_log.read_text()
    leaks = out.leaks(
        tmp_path,
        skip=[tmp_path / "secrets", redis.directory],
        extra=[("redis", redis_contents(redis.client()))],
    )
    assert leaks == []


@dataclass(frozen=True)
class Case:
    """One command run with bad input or against a fault: its exit code, and for exit 2 the
    start of the one line on stderr."""

    name: str
    args: tuple[str, ...]
    code: int
    says: str = ""
    env: dict[str, str | None] = field(default_factory=dict)
    """Changes to the environment of every case (None unsets)."""
    module: str = "grinder.cli"


def test_faults_and_bad_input_never_show_a_secret(
    tmp_path: Path, cli: Any, redis_servers: Callable[..., Any]
) -> None:
    redis = redis_servers(password=REDIS_PW)
    files = secret_files(tmp_path)
    empty = tmp_path / "empty-secret"
    empty.write_text("\n")
    closed = cli.free_port()
    refusing_venue = f"http://venue:{VENUE_PW}@127.0.0.1:{closed}"
    down_redis = f"redis://:{DOWN_REDIS_PW}@127.0.0.1:{closed}/0"
    wrong_redis = f"redis://:{WRONG_REDIS_PW}@127.0.0.1:{redis.port}/0"
    bad = BAD_URL_PW
    missing_socket = str(tmp_path / "no" / "control.sock")
    svc = "scripts.run_live_reconcile"
    every = {**ENV_CREDENTIALS, **SIM_CREDENTIALS, "GRINDER_REDIS_URL": down_redis}

    def service(name: str, *args: str, code: int, **env: str | None) -> Case:
        run_env = {"GRINDER_ARTIFACTS_DIR": str(tmp_path / "artifacts" / name), **env}
        own = ("--log-file", str(tmp_path / f"{name}.log"))
        own += ("--control-socket", str(tmp_path / "run" / f"{name}.sock"))
        return Case(name, (*args, "--metrics-port", "0", *own), code, env=run_env, module=svc)

    cases = [
        # Faults while running: the venue refuses connections; Redis is unreachable; Redis
        # refuses the password. The last two run on the bundled simulator, in-process.
        service(
            "venue-refuses",
            "--venue",
            "testnet",
            "--venue-url",
            refusing_venue,
            "--duration",
            "5",
            code=1,
            **ENV_CREDENTIALS,
        ),
        service(
            "redis-down",
            "--duration",
            "1.5",
            code=0,
            GRINDER_REDIS_URL=down_redis,
            **SIM_CREDENTIALS,
            **ENV_CREDENTIALS,
        ),
        service(
            "redis-wrong-password",
            "--redis-url",
            wrong_redis,
            "--duration",
            "1.5",
            code=0,
        ),
        # Bad input: exit 2, one line naming the flag or variable.
        Case("scheme", ("reconcile", "--redis-url", f"redis//:{bad}@h:6379"), 2, "--redis-url:"),
        Case("slash", ("reconcile", "--redis-url", f"redis://:{bad}/x@h:6379"), 2, "--redis-url:"),
        Case("port", ("reconcile", "--redis-url", f"redis://:{bad}@h:port"), 2, "--redis-url:"),
        Case(
            "env-url",
            ("reconcile",),
            2,
            "GRINDER_REDIS_URL:",
            env={"GRINDER_REDIS_URL": f"rediss//:{bad}@h"},
        ),
        Case("venue", ("reconcile", "--venue-url", f"http//venue:{bad}@h:1"), 2, "--venue-url:"),
        Case(
            "venue-port",
            ("reconcile", "--venue-url", f"http://venue:{bad}@h:99999"),
            2,
            "--venue-url:",
        ),
        Case(
            "duration",
            ("reconcile", "--venue-url", f"http://venue:{bad}@h:1", "--duration", "inf"),
            2,
            "Invalid value for '--duration'",
        ),
        Case(
            "unknown-flag",
            ("reconcile", "--redis-url", f"redis://:{bad}@h:1/0", "--bogus"),
            2,
            "No such option",
        ),
        Case("extra", ("reconcile", f"redis//:{bad}@h"), 2, "Got unexpected extra argument"),
        Case(
            "both-credentials",
            ("reconcile", "--venue", "testnet"),
            2,
            "BINANCE_API_KEY and BINANCE_API_KEY_FILE are both set",
            env={**ENV_CREDENTIALS, **files},
        ),
        Case(
            "empty-secret-file",
            ("reconcile", "--venue", "mainnet"),
            2,
            "BINANCE_API_SECRET_FILE:",
            env={"BINANCE_API_SECRET": None, "BINANCE_API_SECRET_FILE": str(empty)},
        ),
        Case(
            "adopt-scheme",
            (
                "expected",
                "adopt",
                "--redis-url",
                f"redis//:{bad}@h:6379",
                "--venue-url",
                refusing_venue,
                "--yes",
            ),
            2,
            "--redis-url: expected redis://",
        ),
        Case(
            "adopt-env-url",
            ("expected", "adopt", "--venue-url", refusing_venue, "--yes"),
            2,
            "GRINDER_REDIS_URL:",
            env={"GRINDER_REDIS_URL": f"redis://:{bad}/x@h"},
        ),
        Case(
            "adopt-venue-refuses",
            (
                "expected",
                "adopt",
                "--venue",
                "testnet",
                "--venue-url",
                refusing_venue,
                "--redis-url",
                redis.url,
                "--yes",
            ),
            1,
            "TransientExchangeError",
            env=ENV_CREDENTIALS,
        ),
        Case(
            "adopt-sim-credentials",
            ("expected", "adopt", "--venue", "sim", "--venue-url", refusing_venue, "--yes"),
            1,
            "TransientExchangeError",
            env=every,
        ),
        Case(
            "gates-url",
            ("gates", "--symbol", "BTCUSDT", "--position", "--venue-url", f"ftp://venue:{bad}@h"),
            2,
            "--venue-url:",
        ),
        Case(
            "gates-no-service",
            (
                "gates",
                "--symbol",
                "BTCUSDT",
                "--position",
                "--qty",
                "1",
                "--venue-url",
                refusing_venue,
                "--socket",
                missing_socket,
            ),
            2,
            "--socket:",
        ),
        Case(
            "ceremony-url",
            ("ceremony", "check", "--stage", "1", "--metrics-url", f"http//m:{bad}@h"),
            2,
            "--metrics-url:",
        ),
        Case(
            "ceremony-prometheus-url",
            ("ceremony", "check", "--stage", "4", "--prometheus-url", f"http://p:{bad}@h:port"),
            2,
            "--prometheus-url:",
        ),
        Case(
            "ceremony-unreachable",
            (
                "ceremony",
                "check",
                "--stage",
                "4",
                "--socket",
                missing_socket,
                "--metrics-url",
                f"http://m:{METRICS_PW}@127.0.0.1:{closed}/metrics",
                "--prometheus-url",
                f"http://p:{PROMETHEUS_PW}@127.0.0.1:{closed}",
                "--interval",
                "0",
            ),
            2,  # the service cannot be reached: one line, nothing read from elsewhere
            "--socket:",
        ),
        Case("control", ("control", "status", "--socket", missing_socket), 2, "--socket:"),
        Case(
            "smoke",
            ("smoke",),
            0,
            env={"GRINDER_AUDIT_ENABLED": "1", "GRINDER_AUDIT_PATH": str(tmp_path / "smoke.jsonl")},
        ),
        Case(
            "smoke-confirm",
            ("--confirm", "yes"),
            2,
            "--confirm",
            module="scripts.smoke_reconcile_e2e",
        ),
        Case(
            "sim-port-taken",
            ("sim", "serve", "--port", str(redis.port)),
            2,
            "--host/--port:",
        ),
    ]

    def run(case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
        env = with_env(cli.env(scripts=True, runtime_dir=tmp_path / "run", **every), case.env)
        proc: subprocess.CompletedProcess[str] = cli.run(
            case.module, *case.args, env=env, cwd=tmp_path
        )
        return case, proc

    out = Outputs()
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, cases))
    prog = {svc: "run_live_reconcile", "scripts.smoke_reconcile_e2e": "smoke_reconcile_e2e"}
    for case, proc in results:
        out.run(proc, case.name)
        assert proc.returncode == case.code, (case.name, proc.stdout[-2000:], proc.stderr[-2000:])
        if case.code == 2:
            lines = proc.stderr.splitlines()
            assert len(lines) == 1, (case.name, proc.stderr)
            assert lines[0].startswith(f"{prog.get(case.module, 'grinder')}: error: {case.says}")
        elif case.says:
            assert case.says in proc.stderr.splitlines()[-1], (case.name, proc.stderr)

    by_name = {case.name: proc for case, proc in results}
    assert by_name["adopt-scheme"].stderr == (
        "grinder: error: --redis-url: expected redis://host:port[/db], rediss://… or "
        "unix:///path, got 'redis//:***@h:6379'\n"
    )
    assert "venue:             testnet (http://venue:***@" in by_name["venue-refuses"].stdout
    assert "HA_REDIS_DOWN" in (tmp_path / "redis-down.log").read_text()
    assert "AuthenticationError" in (tmp_path / "redis-wrong-password.log").read_text()
    leaks = out.leaks(
        tmp_path,
        skip=[tmp_path / "secrets", redis.directory],
        extra=[("redis", redis_contents(redis.client()))],
    )
    assert leaks == []
