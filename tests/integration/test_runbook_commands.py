"""Every command the runbooks show, run as shown against the simulator.

Picks up ``docs/runbooks/*.md`` and ``docs/HA.md`` (when it exists). From each file:

* every fenced ``bash``/``sh``/``shell`` block runs in ``bash -e`` (a command that fails fails
  the test), in the file's order, against services the file itself starts;
* every ``run: |`` script of a ``yaml`` block (CI snippets) runs the same way;
* every ``python`` block is executed, in one namespace per file (see ``python_seeds``); a
  top-level assignment to a ``ReconcileConfig`` field name (runbook 13's fragments such as
  ``max_orders_per_action=3``) must be a value ``ReconcileConfig`` accepts;
* what the text promises is checked: ``# Should print: X`` after a command, ``# grinder_… N``
  expected-metric comments (the series must be in the output), a ``# {…}`` comment (a JSON
  object the command prints: a line of the output must be that object), ``Output includes:
  `X``` after a block, and an ``Expected output:`` / ``Output (…):`` block after a command (its
  lines, ``...`` aside, must appear in order);
* runbooks 13 and 14 still hold every line of the user's originals (``runbook_seeds/*.txt``,
  verbatim copies), in order.

Markers (HTML comments, invisible when rendered) on the line before a fence:

``<!-- runbook-test: background ready=URL -->``
    a long-running command (a service, the simulator): started first, in the background, the
    test waits until URL answers 200, and stops it with SIGTERM at the end (it must exit 0).
``<!-- runbook-test: setup -->``
    run before the other blocks, after the background ones (drift to triage, say).
``<!-- runbook-test: file=PATH -->`` on a ``toml`` (or any) block
    the block's text is written to PATH when its turn comes (add ``setup`` to write it first).
``<!-- runbook-test: exit=N -->`` (or ``exit=N|M``)
    the block is expected to exit N (``grinder gates`` on a blocked write exits 1); with
    ``N|M`` either, for a command whose verdict depends on timing (a cooldown running or not).
``<!-- runbook-test: skip="REASON" -->``
    not run, reported as skipped with the reason.
``<!-- runbook-test: background ready=URL hosts=H1,H2,… -->``
    a service of a deployment on several hosts (``docs/HA.md``): the command, written for host
    ``H1``, is started once per host, in that order, with every mention of ``H1`` replaced by
    the host's name (``--instance-id grinder-a`` → ``grinder-b``); each host has its own metrics
    port, ``/var/lib/grinder``, ``/var/log/grinder`` and ``XDG_RUNTIME_DIR`` (its control socket);
    ``/etc/grinder`` is shared. The other commands run on ``H1``. With HA on, the test waits until
    ``H1`` leads (``/readyz`` → ``ha.acting``) before it starts the next host, so the deployment
    has the leader the text shows. The hosts share one simulator the test starts.
``<!-- runbook-test: redis-conf -->``
    the configuration of the document's Redis (``redis.conf`` lines): see Redis below.

A document that names ``redis.internal:6379`` gets a real ``redis-server`` on a free loopback
port (the ``redis_servers`` fixture of tests/conftest.py), started before any block, with the
``redis-conf`` block as its configuration file (so a line Redis would refuse fails the test) and
``requirepass`` set to the password of the document's ``redis://:PASSWORD@redis.internal…``
URLs, so a command whose URL lacks it fails like it would against the deployment's Redis. A
``toml`` block written with ``file=…toml`` is loaded through the service's config loader
(``load_config_file``) as written, and again with its commented-out ``# key = value`` settings
switched on: a setting a comment offers must exist and accept the value shown.

Substitutions: the commands run as written except for these, so that nothing touches the real
system and nothing collides with a real service on the host:

=====================================  ==========================================  ==============
in the runbook                         in the test                                 why
=====================================  ==========================================  ==============
``/var/lib/grinder``                   ``$TMP/var/lib/grinder``                    no system dirs
``/var/log/grinder``                   ``$TMP/var/log/grinder``                    no system dirs
``/etc/grinder``                       ``$TMP/etc/grinder``                        no system dirs
``localhost:9090``, ``--metrics-port   ``127.0.0.1:$PORT``, a free port             9090 may be in
9090``                                                                             use (Prometheus)
``127.0.0.1:8765``, ``--port 8765``    a free port for the simulator               same
``cd /path/to/grinder``                ``cd $WORK`` (``src``, ``scripts`` linked)  audit/ in tmp
``--venue mainnet``                    ``--venue sim``                             the simulator
``--duration 60``                      ``--duration 2``                            test runtime
a foreground ``scripts.run_live_      ``… --metrics-port 0 --control-socket        a second
reconcile`` (not a background block)   $TMP/oneoff/control.sock``                  service on the
                                                                                   host
``watch -n N 'CMD'``                   ``CMD`` once                                interactive
``tail -f``                            ``tail -n 100``                             never ends
``redis.internal:6379``                ``127.0.0.1:$REDIS`` (see above)            no real Redis
``H:9090`` of a host ``H``             ``127.0.0.1:$PORT`` of that host            one machine
(``grinder-a:9090``); with a shell
variable (``grinder-$h:9090``)         ``${RUNBOOK_HOSTS[grinder-$h]}``, an
                                       array defined before the block
``--metrics-host 0.0.0.0``             ``--metrics-host 127.0.0.1``                loopback only
``--venue mainnet`` with ``hosts=``    ``--venue sim --venue-url                   one exchange
                                       http://127.0.0.1:$SIM``                     for every host
a background service's ``--expected-db  the same, and a stand-in bot started first  the bot is the
PATH`` that no block creates           (``scripts.drill_bot``: it creates PATH     operator's own
                                       and heartbeats it until the end)            program
=====================================  ==========================================  ==============

``GRINDER_RUNBOOK_VERBOSE=1`` with ``pytest -s`` prints every command and its output.

Environment: ``PATH`` starts with the project's ``.venv/bin`` (``grinder``, ``python3``), then
stand-ins for ``curl`` and ``jq`` only where those are not installed; ``XDG_RUNTIME_DIR`` is a
temp dir (``grinder control`` finds the test's service); ``TZ=UTC``; the gate variables
(``ARMED``, ``ALLOW_MAINNET_TRADE``, …) are removed.

Python blocks get the same substitutions and run in one namespace per document, seeded with what
the snippets take from the code around them (``python_seeds``): runbook 13's exchange port and
executor, and for ``docs/HA.md``'s bot snippet the bot's own order id, clock and send functions
(stand-ins that check the order was recorded in Redis before it is sent). ``DOC_CHECKS`` then
check what a document promises beyond its outputs (runbook 13: the executor's final state;
``docs/HA.md``: one acting leader, the bot's records in Redis, and a step-down handing the lease
to another host without a lease TTL's wait).
"""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.fake import FakePort
from grinder.ha.connection import RedisConnection
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import OrderStatus, PositionSide
from grinder.remediation.executor import RemediationExecutor
from grinder.service.options import load_config_file
from grinder.state.redis_store import RedisExpectedStore
from grinder.state.sqlite import ExpectedStoreError, SqliteExpectedStore

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted(p for p in (REPO / "docs" / "runbooks").glob("*.md") if p.name != "README.md")
HA_DOC = REPO / "docs" / "HA.md"
SEEDS = Path(__file__).resolve().parent / "runbook_seeds"
VENV_BIN = REPO / ".venv" / "bin"
BLOCK_TIMEOUT_S = 120
HA_BLOCK_TIMEOUT_S = 60
LEADER_TIMEOUT_S = 60
"""A deployment's first election waits one lease TTL (10 s in docs/HA.md), then a snapshot."""
SHELL_LANGS = {"bash", "sh", "shell", "console"}


# --- parsing ---------------------------------------------------------------------------


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)
    after: str = ""
    """Prose between this block and the next fence."""
    expected_output: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


_MARKER = re.compile(r"^\s*<!--\s*runbook-test:(.*?)-->\s*$")
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


MARK_KEYS = {"background": False, "ready": True, "setup": False, "file": True, "exit": True}
MARK_KEYS.update({"skip": True, "hosts": True, "redis-conf": False})


def parse_marks(raw: str, where: str) -> dict[str, str]:
    marks: dict[str, str] = {}
    for token in shlex.split(raw):
        key, eq, value = token.partition("=")
        if key not in MARK_KEYS or MARK_KEYS[key] != bool(eq):
            raise ValueError(f"{where}: bad runbook-test marker token {token!r}")
        marks[key] = value
    if "background" in marks and "ready" not in marks:
        raise ValueError(f"{where}: a background block needs ready=URL")
    if "hosts" in marks and "background" not in marks:
        raise ValueError(f"{where}: hosts= is for a background block")
    return marks


def parse(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    prose: list[str] = []
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        if marker:
            pending = parse_marks(marker.group(1), f"{path.name}:{i + 1}")
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        indent, lang = fence.group(1), fence.group(2).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        if blocks:
            blocks[-1].after = "\n".join(prose)
        prose = []
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", pending))
        pending = {}
        i = j + 1
    if blocks:
        blocks[-1].after = "\n".join(prose)
    # An "Expected output:" / "Output (...):" plain block belongs to the command before it.
    for prev, nxt in itertools.pairwise(blocks):
        if prev.lang in SHELL_LANGS and nxt.lang == "":
            label = [x for x in prev.after.splitlines() if x.strip()]
            if label and re.match(r"^(Expected output|Output\b.*):\s*$", label[-1].strip()):
                prev.expected_output = nxt.text
    return blocks


def yaml_run_scripts(block: Block) -> list[str]:
    """The ``run: |`` scripts of a CI snippet."""
    scripts: list[str] = []
    lines = block.text.splitlines()
    for n, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:-\s+)?run:\s*\|\s*$", line)
        if not m:
            continue
        base = len(m.group(1))
        body: list[str] = []
        for nxt in lines[n + 1 :]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= base:
                break
            body.append(nxt)
        width = min((len(x) - len(x.lstrip()) for x in body if x.strip()), default=0)
        scripts.append("\n".join(x[width:] for x in body) + "\n")
    return scripts


# --- the environment the commands run in -------------------------------------------------


CURL_SHIM = '''#!{python}
"""Stand-in for curl (not installed here): -s, -X, -H, -d, one URL."""
import sys, urllib.request, urllib.error
args, method, headers, data, url = sys.argv[1:], None, {{}}, None, None
i = 0
while i < len(args):
    a = args[i]
    if a in ("-X", "--request"):
        method = args[i + 1]; i += 2; continue
    if a in ("-H", "--header"):
        k, _, v = args[i + 1].partition(":"); headers[k.strip()] = v.strip(); i += 2; continue
    if a in ("-d", "--data", "--data-raw"):
        data = args[i + 1].encode(); i += 2; continue
    if a.startswith("-"):
        i += 1; continue
    url = a; i += 1
req = urllib.request.Request(url, data=data, headers=headers, method=method)
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        sys.stdout.buffer.write(r.read())
except urllib.error.HTTPError as e:
    sys.stdout.buffer.write(e.read())
except OSError as e:
    print(f"curl: {{e}}", file=sys.stderr); sys.exit(7)
'''

JQ_SHIM = '''#!{python}
"""Stand-in for jq (not installed here): only the identity filter, over a stream of values."""
import json, sys
if sys.argv[1:2] not in ([], ["."]):
    print("jq stand-in: only '.' is supported", file=sys.stderr); sys.exit(2)
text, dec, i = sys.stdin.read(), json.JSONDecoder(), 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    value, i = dec.raw_decode(text, i)
    print(json.dumps(value, indent=2, ensure_ascii=False))
'''


@dataclass
class Host:
    """One host of a deployment, on this machine: its own metrics port, state and log paths,
    and ``XDG_RUNTIME_DIR`` (where its control socket goes)."""

    name: str
    root: Path
    """``/var/lib/grinder`` and ``/var/log/grinder`` of this host go under here."""
    runtime: Path
    metrics_port: int


@dataclass
class Rig:
    cli: Any
    tmp: Path
    work: Path
    env: dict[str, str]
    metrics_port: int
    sim_port: int
    background: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    """The hosts of a ``hosts=`` block; the first is the one the other commands run on."""
    redis: Any = None
    """The document's Redis (a ``RedisServer`` of tests/conftest.py), when it names one."""
    exchange: bool = False
    """The test runs the simulator every host shares (``--venue mainnet`` goes there)."""

    @classmethod
    def create(cls, cli: Any, tmp: Path) -> Rig:
        work = tmp / "work"
        work.mkdir()
        for name in ("src", "scripts"):
            (work / name).symlink_to(REPO / name)
        shims = tmp / "shims"
        shims.mkdir()
        for tool, text in (("curl", CURL_SHIM), ("jq", JQ_SHIM)):
            if shutil.which(tool) is None:
                shim = shims / tool
                shim.write_text(text.format(python=sys.executable))
                shim.chmod(0o755)
        env = cli.env(runtime_dir=tmp / "run", TZ="UTC")
        del env["PYTHONPATH"]  # the commands set their own, as the runbooks write them
        env["PATH"] = os.pathsep.join([str(shims), str(VENV_BIN), env.get("PATH", "")])
        for d in ("var/lib/grinder", "var/log/grinder", "etc/grinder", "oneoff"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        return cls(cli, tmp, work, env, cli.free_port(), cli.free_port())

    def add_hosts(self, names: list[str]) -> None:
        for n, name in enumerate(names):
            if n == 0:  # the host the document's commands run on: the rig's own paths and port
                host = Host(name, self.tmp, self.tmp / "run", self.metrics_port)
            else:
                root, runtime = self.tmp / "hosts" / name, self.tmp / f"run-{name}"
                host = Host(name, root, runtime, self.cli.free_port())
            for d in ("var/lib/grinder", "var/log/grinder"):
                (host.root / d).mkdir(parents=True, exist_ok=True)
            self.hosts.append(host)

    def substitute(self, text: str, *, background: bool = False, host: Host | None = None) -> str:
        t = self.tmp
        out = text
        root, port = t, self.metrics_port
        if host is not None:
            if host is not self.hosts[0]:  # the command was written for the first host
                first = re.escape(self.hosts[0].name)
                out = re.sub(rf"(?<![\w-]){first}(?![\w-])", host.name, out)
            root, port = host.root, host.metrics_port
        out = out.replace("/var/lib/grinder", f"{root}/var/lib/grinder")
        out = out.replace("/var/log/grinder", f"{root}/var/log/grinder")
        out = out.replace("/etc/grinder", f"{t}/etc/grinder")
        out = re.sub(r"\blocalhost:9090\b", f"127.0.0.1:{port}", out)
        out = re.sub(r"--metrics-port\s+9090\b", f"--metrics-port {port}", out)
        out = re.sub(r"--metrics-host\s+0\.0\.0\.0\b", "--metrics-host 127.0.0.1", out)
        for h in self.hosts:
            out = re.sub(rf"\b{re.escape(h.name)}:9090\b", f"127.0.0.1:{h.metrics_port}", out)
        if self.hosts:  # a host named through a shell variable: grinder-$h:9090
            out = re.sub(
                r"\b([\w.-]*\$\{?[A-Za-z_]\w*\}?[\w.-]*):9090\b", r"${RUNBOOK_HOSTS[\1]}", out
            )
        if self.redis is not None:
            out = re.sub(r"\bredis\.internal:6379\b", f"127.0.0.1:{self.redis.port}", out)
        out = re.sub(r"\b127\.0\.0\.1:8765\b", f"127.0.0.1:{self.sim_port}", out)
        out = re.sub(r"--port\s+8765\b", f"--port {self.sim_port}", out)
        out = out.replace("cd /path/to/grinder", f"cd {self.work}")
        venue = "--venue sim"
        if self.exchange:
            venue += f" --venue-url http://127.0.0.1:{self.sim_port}"
        out = out.replace("--venue mainnet", venue)
        out = re.sub(r"--duration\s+60\b", "--duration 2", out)
        out = re.sub(r"\bwatch\s+-n\s+\d+\s+'([^']*)'", r"\1", out)
        out = re.sub(r"\btail\s+-f\b", "tail -n 100", out)
        if not background:
            out = out.replace(
                "-m scripts.run_live_reconcile",
                f"-m scripts.run_live_reconcile --metrics-port 0 "
                f"--control-socket {t}/oneoff/control.sock",
            )
        return out

    def prelude(self) -> str:
        """What a shell block needs before its text: the hosts' addresses by name."""
        if not self.hosts:
            return ""
        pairs = " ".join(f"[{h.name}]=127.0.0.1:{h.metrics_port}" for h in self.hosts)
        return f"declare -A RUNBOOK_HOSTS=({pairs})\n"

    def run(self, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", self.prelude() + script],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(
        self, label: str, script: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.tmp / f"background-{len(self.background)}.log"
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.work,
            env=self.env if env is None else env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append((label, proc, log))
        return proc, log

    def start_exchange(self) -> None:
        """The simulator every host of the document talks to, in place of the real exchange."""
        self.exchange = True
        proc, log = self.spawn(
            "the hosts' simulator",
            f"exec grinder sim serve --host 127.0.0.1 --port {self.sim_port} "
            "--symbols BTCUSDT,ETHUSDT,SOLUSDT",
        )
        self.cli.wait_http(f"http://127.0.0.1:{self.sim_port}/fapi/v1/ping", proc, log)

    def start(self, block: Block) -> None:
        if "hosts" not in block.marks:
            self._start_on(block, None)
            return
        for n, host in enumerate(self.hosts):
            proc, log = self._start_on(block, host)
            if n == 0:
                self._wait_leading(block, host, proc, log)

    def _start_on(self, block: Block, host: Host | None) -> tuple[subprocess.Popen[bytes], Path]:
        env = self.env if host is None else {**self.env, "XDG_RUNTIME_DIR": str(host.runtime)}
        script = self.substitute(exec_last(block.text), background=True, host=host)
        label = block.where if host is None else f"{block.where} on {host.name}"
        self._start_bot_for(script, label, env)
        proc, log = self.spawn(label, script, env)
        url = self.substitute(block.marks["ready"], background=True, host=host)
        try:
            self.cli.wait_http(url, proc, log)
        except AssertionError as not_ready:
            pytest.fail(f"{label}: {not_ready}")
        return proc, log

    def _start_bot_for(self, script: str, label: str, env: dict[str, str]) -> None:
        """A service that reads the expected state of a bot (``--expected-db PATH``) that no
        block of the document runs or creates: the operator's own bot, played by a stand-in
        that keeps PATH live (``scripts.drill_bot``), started and heartbeating first."""
        found = re.search(r"--expected-db\s+(\S+)", script)
        if found is None or "--create-expected-db" in script:
            return
        db = Path(found.group(1))
        if db.exists():
            return
        bot, log = self.spawn(
            f"the bot of {label}",
            f"PYTHONPATH=src exec python3 -m scripts.drill_bot --expected-db {shlex.quote(str(db))}"
            " --every 2",
            env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and bot.poll() is None:
            if db.exists():
                try:
                    with SqliteExpectedStore(db, readonly=True) as store:
                        if store.bot_heartbeat_ms is not None:
                            return
                except ExpectedStoreError:
                    pass  # being created
            time.sleep(0.1)
        pytest.fail(f"{label}: the stand-in bot did not start\n{log.read_text(errors='replace')}")

    def _wait_leading(
        self, block: Block, host: Host, proc: subprocess.Popen[bytes], log: Path
    ) -> None:
        """With HA on, until ``host`` is the acting leader (a deployment's first election
        waits one lease TTL)."""
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        ha: dict[str, Any] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            ha = self.ha_state(host) or {}
            if ha.get("enabled") is False or ha.get("acting") is True:
                return
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"{block.where}: {host.name} did not lead (last /readyz ha: {ha})\n{tail}")

    def ha_state(self, host: Host) -> dict[str, Any] | None:
        """The ``ha`` part of the host's ``/readyz`` (None while it does not answer)."""
        url = f"http://127.0.0.1:{host.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # 503 before the first snapshot: the same body
            body = exc.read()
        except OSError:
            return None
        try:
            ha: dict[str, Any] = json.loads(body)["ha"]
        except (ValueError, KeyError, TypeError):
            return None
        return ha

    def stop_all(self) -> list[str]:
        problems = []
        for label, proc, log in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    problems.append(f"{label}: did not stop on SIGTERM")
                    continue
            if proc.returncode != 0:
                tail = log.read_text(errors="replace")[-2000:]
                problems.append(f"{label}: exited {proc.returncode}\n{tail}")
        return problems


def exec_last(text: str) -> str:
    """A background block as a script whose last command replaces the shell (``exec``), so
    that SIGTERM reaches the service itself; variable assignments before it stay in front."""
    lines = text.splitlines()
    starts = []  # first line of each command (continuation lines joined)
    continued = False
    for n, line in enumerate(lines):
        if not continued and line.strip() and not line.lstrip().startswith("#"):
            starts.append(n)
        continued = line.rstrip().endswith("\\")
    if not starts:
        return text
    last = " ".join(x.rstrip().removesuffix("\\").strip() for x in lines[starts[-1] :])
    m = re.match(r"((?:[A-Za-z_]\w*=\S*\s+)*)(.*)", last)
    assert m is not None
    return "\n".join([*lines[: starts[-1]], f"{m.group(1)}exec {m.group(2)}"]) + "\n"


# --- checks on a command's output -----------------------------------------------------------


def promised(block: Block, rig: Rig) -> list[Callable[[str], str | None]]:
    """What the runbook says the output shows, as checks returning a problem or None."""
    checks: list[Callable[[str], str | None]] = []
    for line in block.text.splitlines():
        stripped = line.strip()
        m = re.match(r"^#\s*Should print:\s*(.+?)\s*$", stripped)
        if m:
            want = m.group(1)
            checks.append(
                lambda out, want=want: (
                    None if want in out.splitlines() else f"should print {want!r}"
                )
            )
        m = re.match(r"^#\s*(\{.*\})$", stripped)
        if m:
            shown = json.loads(m.group(1))
            checks.append(lambda out, shown=shown: prints_json(out, shown))
        m = re.match(r"^#\s*(grinder_[a-z0-9_]+(?:\{[^}]*\})?)\s+\S", stripped)
        if m:
            series = m.group(1)
            checks.append(
                lambda out, s=series: (
                    None
                    if any(x.startswith(s + " ") for x in out.splitlines())
                    else f"expected series {s} not in the output"
                )
            )
    for m in re.finditer(r"Output includes:\s*`([^`]+)`", block.after):
        want = rig.substitute(m.group(1))
        checks.append(lambda out, w=want: None if w in out else f"output should include {w!r}")
    if block.expected_output is not None:
        checks.append(partial(shown_together, runs_of_lines(block.expected_output)))
    return checks


def prints_json(out: str, shown: Any) -> str | None:
    for line in out.splitlines():
        try:
            if json.loads(line) == shown:
                return None
        except ValueError:
            continue
    return f"should print the JSON {json.dumps(shown)}"


def runs_of_lines(expected: str) -> list[list[str]]:
    """An expected-output block as the runs of lines the runbook shows together: a ``...``
    line separates two runs (and stands for any lines); blank lines at a run's ends are
    dropped, blank lines inside it kept."""
    runs: list[list[str]] = [[]]
    for line in expected.splitlines():
        if line.strip() == "...":
            runs.append([])
        else:
            runs[-1].append(line.rstrip())
    trimmed = []
    for run in runs:
        while run and not run[0]:
            run.pop(0)
        while run and not run[-1]:
            run.pop()
        if run:
            trimmed.append(run)
    return trimmed


def shown_together(runs: list[list[str]], out: str) -> str | None:
    """None when each run appears in ``out`` as consecutive lines, the runs in order."""
    got = [x.rstrip() for x in out.splitlines()]
    at = 0
    for run in runs:
        n = len(run)
        start = next((i for i in range(at, len(got) - n + 1) if got[i : i + n] == run), None)
        if start is None:
            return f"expected output lines missing, or not together as shown: {run!r}"
        at = start + n
    return None


# --- python blocks ------------------------------------------------------------------------


BOT_ORDER_ID = "grinder_d_BTCUSDT_1_1704067200_1"


def python_seeds() -> dict[str, Any]:
    """Names the Python snippets use without defining, because the code around them has them:
    for runbook 13, an exchange port and the executor of the passive stage (its stage-1 whitelist
    snippet); for docs/HA.md's bot snippet, the bot's own order id (``cid``), clock (``now_ms``)
    and send functions. The stand-ins for the sends note what Redis held for the order when
    they were called (``_sent``): "record, then send" is checked afterwards."""
    port = FakePort()
    config = ReconcileConfig(symbol_whitelist=["BTCUSDT", "ETHUSDT"])
    sent: list[tuple[str, Any]] = []
    ns: dict[str, Any] = {
        "futures_port": port,
        "RemediationExecutor": RemediationExecutor,
        "Decimal": Decimal,
        "executor": RemediationExecutor(config=config, port=port),
        "cid": BOT_ORDER_ID,
        "now_ms": int(time.time() * 1000),
        "_sent": sent,
    }

    def sender(kind: str) -> Callable[..., None]:
        def send(client_order_id: str, *_: Any) -> None:
            store = ns.get("store")
            recorded = store.read_order(client_order_id) if store is not None else None
            sent.append((kind, recorded))

        return send

    ns["send_new_order"] = sender("new")
    ns["send_cancel"] = sender("cancel")
    return ns


def run_python(block: Block, text: str, ns: dict[str, Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(text, block.where, "exec"), ns)
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ReconcileConfig.model_fields:
                ReconcileConfig(**{target.id: ns[target.id]})  # a value the config accepts
    return out.getvalue()


def check_config_file(block: Block, target: Path) -> None:
    """A TOML config the text shows loads through the service's own loader, as written and
    with the settings its comments offer (``# key = value``) switched on."""
    load_config_file(target)
    offered = re.sub(r"(?m)^(\s*)#\s*([a-z_]+\s*=)", r"\1\2", block.text)
    if offered != block.text:
        variant = target.with_name(target.name + ".offered")
        variant.write_text(offered, encoding="utf-8")
        try:
            load_config_file(variant)
        finally:
            variant.unlink()


@dataclass
class DocRun:
    """What one document's run leaves for its checks (while its services still run)."""

    rig: Rig
    ns: dict[str, Any]
    printed: list[str] = field(default_factory=list)
    """What each Python block printed, in order."""
    outputs: list[tuple[Block, str, float]] = field(default_factory=list)
    """Each shell command's block, its stdout, and when it ended (``time.monotonic()``)."""

    def output_of(self, marker: str) -> tuple[str, float]:
        found = [(out, t) for block, out, t in self.outputs if marker in block.text]
        assert len(found) == 1, f"one command with {marker!r} expected, found {len(found)}"
        return found[0]


def check_runbook13_python(run: DocRun) -> None:
    assert "whitelist=['BTCUSDT', 'ETHUSDT']" in run.printed[0]
    executor: RemediationExecutor = run.ns["executor"]
    # Stage 3 built an armed executor; the rollback snippet disabled the action and disarmed it.
    assert executor.symbol_whitelist == ["BTCUSDT"]
    assert executor.armed is False
    assert executor.config.action is RemediationAction.NONE
    assert executor.config.dry_run is True
    ctx = executor.begin_run()
    order = "grinder_d_BTCUSDT_1_1704067200_1"
    reason = executor.gate(ActionKind.CANCEL, "BTCUSDT", order, Decimal(0), ctx)
    assert reason is BlockReason.ACTION_IS_NONE


def check_ha(run: DocRun) -> None:
    """docs/HA.md: "exactly one instance says leader and acting" (the first host, which the test
    let lead), the bot recorded before it sent, and a step-down hands the lease to another host
    without waiting out the lease."""
    rig = run.rig
    names = [h.name for h in rig.hosts]
    out, _ = run.output_of("/readyz | jq -c .ha")
    states = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert sorted(s["instance_id"] for s in states) == sorted(names), states
    acting = [s["instance_id"] for s in states if s["leader"] and s["acting"]]
    assert acting == [names[0]], states
    assert all(s["enabled"] and s["redis_up"] and s["namespace"] == "grinder" for s in states)

    # The bot's snippet: the order was in Redis before it was sent, cancel-requested before
    # the cancel was sent; Redis holds what the snippet wrote last.
    sent = run.ns["_sent"]
    assert [kind for kind, _ in sent] == ["new", "cancel"], sent
    at_new, at_cancel = (recorded for _, recorded in sent)
    assert at_new is not None, "sent before it was recorded"
    assert at_new.status is OrderStatus.NEW
    assert at_cancel is not None
    assert at_cancel.cancel_requested, "cancel sent before it was recorded"
    reader = RedisExpectedStore(RedisConnection(rig.redis.url, namespace="grinder"), readonly=True)
    try:
        order = reader.get_order(BOT_ORDER_ID)
        position = reader.get_position(("BTCUSDT", PositionSide.BOTH))
    finally:
        reader.conn.close()
    assert order is not None
    assert order.status is OrderStatus.FILLED
    assert position is not None
    assert position.qty == Decimal("0.010")

    # "Check with /readyz that another instance shows acting: true": the lease is taken within
    # a retry interval, not after a lease TTL (what a dead leader would cost).
    _, stepped_down = run.output_of("/ha/step-down")
    lease_ttl_s = float(states[0]["lease_ttl_s"])
    deadline = stepped_down + LEADER_TIMEOUT_S
    new_leader: tuple[str, float] | None = None
    current: dict[str, dict[str, Any] | None] = {}
    while time.monotonic() < deadline:
        current = {h.name: rig.ha_state(h) for h in rig.hosts}
        leaders = [n for n, s in current.items() if s is not None and s.get("leader")]
        if new_leader is None and leaders and leaders[0] != names[0]:
            new_leader = (leaders[0], time.monotonic() - stepped_down)
        acting = [n for n, s in current.items() if s is not None and s.get("acting")]
        if new_leader is not None and acting == [new_leader[0]]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no other host acting after the step-down: {current}")
    assert new_leader[1] < lease_ttl_s, f"the lease was taken after {new_leader[1]:.1f} s"


DOC_CHECKS: dict[str, Callable[[DocRun], None]] = {
    "13_OPERATOR_CEREMONY.md": check_runbook13_python,
    "HA.md": check_ha,
}


# --- the test -------------------------------------------------------------------------------


def documents() -> list[Path]:
    docs = list(RUNBOOKS)
    if HA_DOC.exists():
        docs.append(HA_DOC)
    return docs


def redis_password(text: str) -> str | None:
    """The password of the document's ``redis://:PASSWORD@redis.internal…`` URLs."""
    found = set(re.findall(r"redis://:([^@\s/]+)@redis\.internal\b", text))
    assert len(found) <= 1, f"the document's Redis URLs carry different passwords: {found}"
    return found.pop() if found else None


def prepare(rig: Rig, doc: Path, blocks: list[Block], request: pytest.FixtureRequest) -> None:
    """What the document's commands assume exists before the first one: its Redis, its hosts
    and the exchange they share."""
    text = doc.read_text(encoding="utf-8")
    if re.search(r"\bredis\.internal:6379\b", text):
        conf_blocks = [b for b in blocks if "redis-conf" in b.marks]
        assert len(conf_blocks) <= 1, "one redis-conf block per document"
        conf = None
        if conf_blocks:
            conf = rig.tmp / "redis.conf"
            conf.write_text(conf_blocks[0].text, encoding="utf-8")
        start_redis = request.getfixturevalue("redis_servers")
        try:
            rig.redis = start_redis(config_file=conf, password=redis_password(text))
        except RuntimeError as exc:
            where = conf_blocks[0].where if conf_blocks else doc.name
            pytest.fail(f"{where}: the document's Redis did not start: {exc}")
    with_hosts = [b for b in blocks if "hosts" in b.marks]
    assert len(with_hosts) <= 1, "one hosts= block per document"
    if with_hosts:
        rig.add_hosts(with_hosts[0].marks["hosts"].split(","))
        rig.start_exchange()


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_runbook_command_runs_as_shown(
    doc: Path, tmp_path: Path, cli: Any, request: pytest.FixtureRequest
) -> None:
    blocks = parse(doc)
    is_ha = doc == HA_DOC
    rig = Rig.create(cli, tmp_path)
    run = DocRun(rig, python_seeds())
    skipped: list[str] = []
    failures: list[str] = []

    def runnable(block: Block) -> bool:
        if "file" not in block.marks and block.lang not in (*SHELL_LANGS, "yaml", "yml", "python"):
            return False  # output, diagrams, configuration shown for reading (or Redis's)
        if "skip" in block.marks:
            skipped.append(f"{block.where}: {block.marks['skip']}")
            return False
        return True

    def write_file(block: Block) -> None:
        target = Path(rig.substitute(block.marks["file"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")
        if target.suffix == ".toml":
            try:
                check_config_file(block, target)
            except Exception as exc:
                failures.append(f"{block.where}: {type(exc).__name__}: {exc}")

    def run_shell(block: Block, script: str) -> None:
        timeout = HA_BLOCK_TIMEOUT_S if is_ha else BLOCK_TIMEOUT_S
        text = rig.substitute(script)
        try:
            proc = rig.run(text, timeout)
        except subprocess.TimeoutExpired:
            failures.append(
                f"{block.where}: timed out after {timeout} s (a long-running command needs "
                "<!-- runbook-test: background ready=URL -->)"
            )
            return
        run.outputs.append((block, proc.stdout, time.monotonic()))
        if os.environ.get("GRINDER_RUNBOOK_VERBOSE") == "1":  # pytest -s shows every command
            print(f"\n=== {block.where} (exit {proc.returncode})\n$ {text}\n{proc.stdout}")
        want = {int(code) for code in block.marks.get("exit", "0").split("|")}
        if proc.returncode not in want:
            failures.append(
                f"{block.where}: exit {proc.returncode} (expected {want})\n$ {text}\n"
                f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
            return
        for check in promised(block, rig):
            problem = check(proc.stdout)
            if problem:
                failures.append(f"{block.where}: {problem}\n--- stdout\n{proc.stdout[-3000:]}")

    def run_block(block: Block) -> None:
        if not runnable(block):
            return
        if "file" in block.marks:
            write_file(block)
        elif block.lang in SHELL_LANGS:
            run_shell(block, block.text)
        elif block.lang in ("yaml", "yml"):
            for script in yaml_run_scripts(block):
                run_shell(block, script)
        elif block.lang == "python":
            try:
                run.printed.append(run_python(block, rig.substitute(block.text), run.ns))
            except Exception as exc:
                failures.append(f"{block.where}: {type(exc).__name__}: {exc}")

    setup = [b for b in blocks if "background" in b.marks or "setup" in b.marks]
    try:
        prepare(rig, doc, blocks, request)
        for block in setup:
            if not runnable(block):
                continue
            if "background" in block.marks:
                rig.start(block)
            else:
                run_block(block)
            if failures:
                break
        if not failures:
            for block in blocks:
                if block not in setup:
                    run_block(block)
        check = DOC_CHECKS.get(doc.name)
        if check is not None and not failures:
            check(run)
    finally:
        failures += rig.stop_all()
    assert not failures, "\n\n".join(failures)
    ran = len(run.outputs) + len(run.printed)
    if skipped and ran == 0:
        pytest.skip("; ".join(skipped))


@pytest.mark.parametrize("name", ["13_OPERATOR_CEREMONY.md", "14_E2E_SMOKE.md"])
def test_runbook_keeps_every_line_of_the_users_original(name: str) -> None:
    seed = (SEEDS / name.replace(".md", ".txt")).read_text(encoding="utf-8").splitlines()
    doc = (REPO / "docs" / "runbooks" / name).read_text(encoding="utf-8").splitlines()
    i = 0
    for line in doc:
        if i < len(seed) and line == seed[i]:
            i += 1
    assert i == len(seed), f"line {i + 1} of the original is missing or moved: {seed[i]!r}"


def test_expected_output_lines_shown_together_must_be_printed_together() -> None:
    (dry_run, _gates) = [
        b for b in parse(REPO / "docs/runbooks/14_E2E_SMOKE.md") if b.expected_output
    ]
    assert dry_run.expected_output is not None
    runs = runs_of_lines(dry_run.expected_output)
    assert [
        "--- Scenario: order [PASS] ---",
        "  Mismatches detected:  1",
        "  Expected action:      cancel",
        "  Actual action:        cancel",
        "  Port calls:           0",
    ] in runs
    assert runs[-1][-3:] == ["  Passed:  3/3", "", "  ALL SCENARIOS PASSED"]
    shown = "a\nb\nc\n"
    assert shown_together([["a", "b"], ["c"]], shown) is None
    assert shown_together([["a", "c"]], shown) is not None  # b comes between
    assert shown_together([["b"], ["a"]], shown) is not None  # out of order


def test_the_harness_finds_the_commands_it_must_run() -> None:
    by_name = {p.name: parse(p) for p in RUNBOOKS}
    assert set(by_name) >= {
        "11_RECONCILIATION_TRIAGE.md",
        "12_ACTIVE_REMEDIATION.md",
        "13_OPERATOR_CEREMONY.md",
        "14_E2E_SMOKE.md",
    }
    r13 = by_name["13_OPERATOR_CEREMONY.md"]
    shell = [b.text for b in r13 if b.lang == "bash"]
    assert any("watch -n 10" in t for t in shell)
    assert any("grinder ceremony check --stage 1" in t for t in shell)
    assert sum(1 for b in r13 if b.lang == "python") == 6
    r14 = by_name["14_E2E_SMOKE.md"]
    assert sum(len(yaml_run_scripts(b)) for b in r14 if b.lang == "yaml") == 2
    assert sum(1 for b in r14 if b.expected_output is not None) == 2
    indented = [b for b in r13 if b.text.startswith("curl -s http://localhost:9090/metrics | grep")]
    assert any("action_blocked" in b.text for b in indented)
    ha = parse(HA_DOC)
    assert not [b.where for b in ha if "skip" in b.marks]
    (deployment,) = [b for b in ha if "hosts" in b.marks]
    assert deployment.marks["hosts"] == "grinder-a,grinder-b,grinder-c"
    assert "--instance-id grinder-a" in deployment.text
    assert sum(1 for b in ha if "redis-conf" in b.marks) == 1
    assert [b.marks.get("file") for b in ha if b.lang == "toml"] == ["/etc/grinder/grinder.toml"]
    assert sum(1 for b in ha if b.lang == "python") == 1
    assert sum(1 for b in ha if b.lang == "bash" and "/ha/step-down" in b.text) == 1


def test_a_deployment_on_several_hosts_is_substituted_host_by_host(
    tmp_path: Path, cli: Any
) -> None:
    rig = Rig.create(cli, tmp_path)
    rig.add_hosts(["grinder-a", "grinder-b"])
    rig.exchange = True
    a, b = rig.hosts
    command = exec_last(
        "export BUDGET_STATE_PATH=/var/lib/grinder/b.json   # per host\n"
        "ARMED=1 X=2 \\\n"
        "python3 -m scripts.run_live_reconcile --venue mainnet --instance-id grinder-a \\\n"
        "    --metrics-host 0.0.0.0 --metrics-port 9090\n"
    )
    assert command.splitlines()[-1].startswith("ARMED=1 X=2 exec python3 -m ")
    on_b = rig.substitute(command, background=True, host=b)
    assert f"BUDGET_STATE_PATH={tmp_path}/hosts/grinder-b/var/lib/grinder/b.json" in on_b
    assert "--instance-id grinder-b" in on_b
    assert f"--metrics-host 127.0.0.1 --metrics-port {b.metrics_port}" in on_b
    assert f"--venue sim --venue-url http://127.0.0.1:{rig.sim_port}" in on_b
    on_a = rig.substitute(command, background=True, host=a)
    assert "--instance-id grinder-a" in on_a
    assert f"--metrics-port {rig.metrics_port}" in on_a
    shell = rig.substitute("curl http://grinder-b:9090/readyz; curl http://grinder-$h:9090/x")
    assert shell == (
        f"curl http://127.0.0.1:{b.metrics_port}/readyz; curl http://${{RUNBOOK_HOSTS[grinder-$h]}}/x"
    )
    assert rig.prelude() == (
        f"declare -A RUNBOOK_HOSTS=([grinder-a]=127.0.0.1:{a.metrics_port} "
        f"[grinder-b]=127.0.0.1:{b.metrics_port})\n"
    )
