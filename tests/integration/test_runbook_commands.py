"""Every command the runbooks show, run as shown against the simulator.

Picks up ``docs/runbooks/*.md`` and ``docs/HA.md`` (when it exists). From each file:

* every fenced ``bash``/``sh``/``shell`` block runs in ``bash -e`` (a command that fails fails
  the test), in the file's order, against services the file itself starts;
* every ``run: |`` script of a ``yaml`` block (CI snippets) runs the same way;
* every ``python`` block is executed, in one namespace per file (see ``PYTHON_SEEDS``); a
  top-level assignment to a ``ReconcileConfig`` field name (runbook 13's fragments such as
  ``max_orders_per_action=3``) must be a value ``ReconcileConfig`` accepts;
* what the text promises is checked: ``# Should print: X`` after a command, ``# grinder_… N``
  expected-metric comments (the series must be in the output), ``Output includes: `X``` after a
  block, and an ``Expected output:`` / ``Output (…):`` block after a command (its lines, ``...``
  aside, must appear in order);
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
=====================================  ==========================================  ==============

``GRINDER_RUNBOOK_VERBOSE=1`` with ``pytest -s`` prints every command and its output.

Environment: ``PATH`` starts with the project's ``.venv/bin`` (``grinder``, ``python3``), then
stand-ins for ``curl`` and ``jq`` only where those are not installed; ``XDG_RUNTIME_DIR`` is a
temp dir (``grinder control`` finds the test's service); ``TZ=UTC``; the gate variables
(``ARMED``, ``ALLOW_MAINNET_TRADE``, …) are removed. Blocks of ``docs/HA.md`` that need a
Redis-backed HA deployment (Redis, the deployment's hosts, an HA instance's ``/ha/`` control
endpoint) are skipped with that reason; its other blocks run like the runbooks'.
"""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.fake import FakePort
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.remediation import RemediationExecutor
from grinder.reconcile.routing import ActionKind

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted(p for p in (REPO / "docs" / "runbooks").glob("*.md") if p.name != "README.md")
HA_DOC = REPO / "docs" / "HA.md"
SEEDS = Path(__file__).resolve().parent / "runbook_seeds"
VENV_BIN = REPO / ".venv" / "bin"
BLOCK_TIMEOUT_S = 120
HA_BLOCK_TIMEOUT_S = 60
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
MARK_KEYS["skip"] = True


def parse_marks(raw: str, where: str) -> dict[str, str]:
    marks: dict[str, str] = {}
    for token in shlex.split(raw):
        key, eq, value = token.partition("=")
        if key not in MARK_KEYS or MARK_KEYS[key] != bool(eq):
            raise ValueError(f"{where}: bad runbook-test marker token {token!r}")
        marks[key] = value
    if "background" in marks and "ready" not in marks:
        raise ValueError(f"{where}: a background block needs ready=URL")
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
class Rig:
    cli: Any
    tmp: Path
    work: Path
    env: dict[str, str]
    metrics_port: int
    sim_port: int
    background: list[tuple[Block, subprocess.Popen[bytes], Path]] = field(default_factory=list)

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

    def substitute(self, text: str, *, background: bool = False) -> str:
        t = self.tmp
        out = text.replace("/var/lib/grinder", f"{t}/var/lib/grinder")
        out = out.replace("/var/log/grinder", f"{t}/var/log/grinder")
        out = out.replace("/etc/grinder", f"{t}/etc/grinder")
        out = re.sub(r"\blocalhost:9090\b", f"127.0.0.1:{self.metrics_port}", out)
        out = re.sub(r"--metrics-port\s+9090\b", f"--metrics-port {self.metrics_port}", out)
        out = re.sub(r"\b127\.0\.0\.1:8765\b", f"127.0.0.1:{self.sim_port}", out)
        out = re.sub(r"--port\s+8765\b", f"--port {self.sim_port}", out)
        out = out.replace("cd /path/to/grinder", f"cd {self.work}")
        out = out.replace("--venue mainnet", "--venue sim")
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

    def run(self, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, block: Block) -> None:
        command = " ".join(
            line.rstrip("\\").strip()
            for line in block.text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
        log = self.tmp / f"background-{len(self.background)}.log"
        proc = subprocess.Popen(
            # One simple command: bash execs it, so SIGTERM reaches the service itself.
            ["bash", "-c", self.substitute(command, background=True)],
            cwd=self.work,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append((block, proc, log))
        url = self.substitute(block.marks["ready"], background=True)
        try:
            self.cli.wait_http(url, proc, log)
        except AssertionError as not_ready:
            pytest.fail(f"{block.where}: {not_ready}")

    def stop_all(self) -> list[str]:
        problems = []
        for block, proc, log in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    problems.append(f"{block.where}: did not stop on SIGTERM")
                    continue
            if proc.returncode != 0:
                tail = log.read_text(errors="replace")[-2000:]
                problems.append(f"{block.where}: exited {proc.returncode}\n{tail}")
        return problems


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


def python_seeds() -> dict[str, Any]:
    """Names the runbooks' Python snippets use without defining: an exchange port and, for
    runbook 13's stage-1 whitelist snippet, the executor of the passive stage."""
    port = FakePort()
    config = ReconcileConfig(symbol_whitelist=["BTCUSDT", "ETHUSDT"])
    return {
        "futures_port": port,
        "RemediationExecutor": RemediationExecutor,
        "Decimal": Decimal,
        "executor": RemediationExecutor(config=config, port=port),
    }


def run_python(block: Block, ns: dict[str, Any], *, lenient: bool) -> str:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block.text, block.where, "exec"), ns)
    except NameError as exc:
        if lenient:
            pytest.skip(f"{block.where}: not self-contained ({exc})")
        raise
    for node in ast.parse(block.text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ReconcileConfig.model_fields:
                ReconcileConfig(**{target.id: ns[target.id]})  # a value the config accepts
    return out.getvalue()


def check_runbook13_python(ns: dict[str, Any], printed: list[str]) -> None:
    assert "whitelist=['BTCUSDT', 'ETHUSDT']" in printed[0]
    executor: RemediationExecutor = ns["executor"]
    # Stage 3 built an armed executor; the rollback snippet disabled the action and disarmed it.
    assert executor.symbol_whitelist == ["BTCUSDT"]
    assert executor.armed is False
    assert executor.config.action is RemediationAction.NONE
    assert executor.config.dry_run is True
    ctx = executor.begin_run()
    order = "grinder_d_BTCUSDT_1_1704067200_1"
    reason = executor.gate(ActionKind.CANCEL, "BTCUSDT", order, Decimal(0), ctx)
    assert reason is BlockReason.ACTION_IS_NONE


PYTHON_CHECKS = {"13_OPERATOR_CEREMONY.md": check_runbook13_python}


# --- the test -------------------------------------------------------------------------------


def documents() -> list[Path]:
    docs = list(RUNBOOKS)
    if HA_DOC.exists():
        docs.append(HA_DOC)
    return docs


def ha_deployment_needed(text: str) -> str | None:
    """Why a block of docs/HA.md cannot run here (it needs a Redis-backed HA deployment)."""
    if "redis" in text.lower():
        return "needs Redis (a Redis-backed HA deployment)"
    if "/ha/" in text:
        return "needs a running HA instance (control /ha/...)"
    remote = re.search(r"https?://(?!localhost\b|127\.0\.0\.1\b)[\w$.-]+", text)
    if remote:
        return f"addresses the hosts of an HA deployment ({remote.group(0)})"
    return None


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_runbook_command_runs_as_shown(doc: Path, tmp_path: Path, cli: Any) -> None:
    blocks = parse(doc)
    is_ha = doc == HA_DOC
    rig = Rig.create(cli, tmp_path)
    skipped: list[str] = []
    failures: list[str] = []
    printed: list[str] = []
    ns = python_seeds()
    ran = 0

    def runnable(block: Block) -> bool:
        if "file" not in block.marks and block.lang not in (*SHELL_LANGS, "yaml", "yml", "python"):
            return False  # output, diagrams, configuration shown for reading
        if "skip" in block.marks:
            skipped.append(f"{block.where}: {block.marks['skip']}")
            return False
        why = ha_deployment_needed(block.text) if is_ha else None
        if why is not None:
            skipped.append(f"{block.where}: {why}")
            return False
        return True

    def write_file(block: Block) -> None:
        target = Path(rig.substitute(block.marks["file"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")

    def run_shell(block: Block, script: str) -> None:
        nonlocal ran
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
        ran += 1
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
                printed.append(run_python(block, ns, lenient=is_ha))
            except Exception as exc:
                failures.append(f"{block.where}: {type(exc).__name__}: {exc}")

    setup = [b for b in blocks if "background" in b.marks or "setup" in b.marks]
    try:
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
    finally:
        failures += rig.stop_all()
    assert not failures, "\n\n".join(failures)
    check = PYTHON_CHECKS.get(doc.name)
    if check is not None:
        check(ns, printed)
    if skipped and ran == 0 and not printed:
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
