"""``grinder demo --ceremony`` in a subprocess: the ceremony checker against the demo service.

The demo's service starts passive: stage 1 passes with the printed flags and stage 2 fails; the
printed ``grinder control set`` commands open stage 2, after which stage 2 passes and stage 1
fails, naming the settings now active; a gate misconfigured through the control socket makes
stage 2 fail with the evidence; SIGTERM stops the demo cleanly (exit 0). The checker's own
environment has none of the service's settings: what it reports is the service's.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

pytestmark = pytest.mark.subprocess

CHECK = re.compile(r"^\s+grinder ceremony check --stage (\d) (.+)$")
CONTROL = re.compile(r"^\s+grinder control set dry_run false (.+)$")
OPEN = re.compile(r"^\s+grinder control set (action|allow_active_remediation) (\S+) (.+)$")
READY = "ceremony ready:"


def _read_until_ready(out: IO[str], proc: subprocess.Popen[str], timeout: float) -> list[str]:
    """The demo's lines up to and including its readiness line."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = out.readline()
        if not line:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
            continue
        lines.append(line.rstrip("\n"))
        if line.startswith(READY):
            return lines
    raise AssertionError("no readiness line:\n" + "\n".join(lines))


@pytest.fixture
def demo(cli: Any, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    log = tmp_path / "demo.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grinder.cli",
                "demo",
                "--ceremony",
                "--fast",
                "--hold",
                "90",
                "--artifacts-dir",
                str(tmp_path / "artifacts"),
            ],
            cwd=tmp_path,
            env=cli.env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        with log.open() as out:
            lines = _read_until_ready(out, proc, timeout=30)
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_ceremony_walk_from_stage_1_to_stage_2_and_a_misconfigured_gate_fails(
    demo: tuple[subprocess.Popen[str], list[str]], cli: Any
) -> None:
    def grinder(*args: str) -> subprocess.CompletedProcess[str]:
        return cli.run("grinder.cli", *args, timeout=30)

    proc, lines = demo
    text = "\n".join(lines)
    checks = {m.group(1): shlex.split(m.group(2)) for ln in lines if (m := CHECK.match(ln))}
    assert set(checks) == {"1", "2"}, text
    for flags in checks.values():
        assert "--socket" in flags, text
        assert "--metrics-url" in flags, text
    control = next((m.group(1) for ln in lines if (m := CONTROL.match(ln))), None)
    assert control is not None, text
    opening = [m.groups() for ln in lines if (m := OPEN.match(ln))]
    assert [(f, v) for f, v, _ in opening] == [
        ("action", "cancel_all"),
        ("allow_active_remediation", "true"),
    ], text

    def passes(stage: str) -> str:
        result = grinder("ceremony", "check", "--stage", stage, *checks[stage])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "RESULT: PASS" in result.stdout, result.stdout
        assert re.search(r"^  PASS ", result.stdout, re.MULTILINE), result.stdout
        assert not re.search(r"^  FAIL ", result.stdout, re.MULTILINE), result.stdout
        return result.stdout

    stage1 = passes("1")
    assert re.search(r"PASS\s+1\.1\s+No ORDER_EXISTS_UNEXPECTED mismatches", stage1), stage1
    assert re.search(r"PASS\s+1\s+No active feature enabled yet", stage1), stage1
    early = grinder("ceremony", "check", "--stage", "2", *checks["2"])
    assert early.returncode == 1, early.stdout  # stage 2's settings are not in force yet

    for field, value, flags in opening:
        opened = grinder("control", "set", field, value, *shlex.split(flags))
        assert opened.returncode == 0, opened.stdout + opened.stderr
    passes("2")
    late = grinder("ceremony", "check", "--stage", "1", *checks["1"])
    assert late.returncode == 1, late.stdout
    active = re.search(
        r"^  FAIL\s+1\s+No active feature enabled yet.*\n\s+(.+)$", late.stdout, re.MULTILINE
    )
    assert active is not None, late.stdout
    assert active.group(1).startswith("active: action=cancel_all (gate 1"), late.stdout

    changed = grinder("control", "set", "dry_run", "false", *shlex.split(control))
    assert changed.returncode == 0, changed.stdout + changed.stderr

    failed = grinder("ceremony", "check", "--stage", "2", *checks["2"])
    assert failed.returncode == 1, failed.stdout + failed.stderr
    out = failed.stdout
    fail = re.search(r"^  FAIL\s+2\.1\s+dry_run = true \(CRITICAL\)\n\s+(.+)$", out, re.MULTILINE)
    assert fail is not None, out
    assert fail.group(1).startswith("dry_run=false (control /status)"), out
    assert "nothing may be sent" in out
    assert "RESULT: FAIL" in out, out
    assert "dry_run = true (CRITICAL)" in out.split("RESULT: FAIL")[1], out

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
