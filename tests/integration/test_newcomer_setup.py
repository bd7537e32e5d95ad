"""A newcomer's first minutes: the README's set-up on a copy of the repository, then the
`grinder` commands the docs show, found through the PATH the set-up leaves.

Nothing touches the real home: each test has its own ``HOME`` and a ``PATH`` made of the
machine's directories that hold no ``grinder`` (so only the set-up can put one there). The
copy's ``.venv`` is a link to this checkout's, already installed, and its ``pyproject.toml`` is
dated with the installation: ``bin/setup`` then installs nothing (a pip install into the linked
environment would repoint this checkout's editable install) and does the rest as on a clean
clone: it finds ``.venv`` current and puts the command on the PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "*.egg-info", "audit", "artifacts",
)  # fmt: skip


def clone(tmp: Path) -> Path:
    copy = tmp / "grinder"
    shutil.copytree(REPO, copy, ignore=NOT_COPIED, symlinks=True)
    (copy / ".venv").symlink_to(REPO / ".venv")
    stamps = [REPO / ".venv" / ".installed-dev", REPO / ".venv" / ".installed-runtime"]
    stamp = next((s for s in stamps if s.exists()), None)
    assert stamp is not None, "this checkout's .venv is not installed: run bin/setup --dev"
    # A second before the stamp, in nanoseconds: bin/setup compares them with ``-nt``, which
    # sees the float ``st_mtime``'s rounding as "newer" now and then (a reinstall).
    before = stamp.stat().st_mtime_ns - 1_000_000_000
    os.utime(copy / "pyproject.toml", ns=(before, before))
    return copy


def machine_path() -> list[str]:
    """The directories of this machine's PATH that hold no ``grinder``."""
    dirs = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    return [d for d in dirs if d and not (Path(d) / "grinder").exists()]


def shell(
    script: str, *, home: Path, path: list[str], **env: str
) -> subprocess.CompletedProcess[str]:
    """``bash -c script`` as a fresh login would run it: this HOME and PATH, nothing of the
    project's (no PYTHONPATH, no virtual environment)."""
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "TMPDIR")}
    return subprocess.run(
        ["bash", "-c", script],
        env={**keep, "HOME": str(home), "PATH": os.pathsep.join(path), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_after_the_setup_grinder_is_on_the_path_and_the_docs_commands_work(
    tmp_path: Path, cli: Any
) -> None:
    copy, home = clone(tmp_path), tmp_path / "home"
    local_bin = home / ".local" / "bin"
    path = [str(local_bin), *machine_path()]  # ~/.local/bin on PATH (Debian's ~/.profile)
    before = shell("grinder --version", home=home, path=path)
    assert before.returncode == 127, before.stderr  # command not found: nothing there yet

    setup = shell(f"{copy}/bin/setup", home=home, path=path)
    assert setup.returncode == 0, setup.stderr
    link = local_bin / "grinder"
    assert setup.stderr == f"bin/setup: linked {link} -> {copy}/.venv/bin/grinder\n"
    again = shell(f"{copy}/bin/setup", home=home, path=path)
    assert (again.returncode, again.stderr) == (0, "")  # idempotent, and quiet when done

    runtime = tmp_path / "run"
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    assert shell("grinder --help", home=home, path=path).returncode == 0
    absent = shell("grinder control status", home=home, path=path, **env)
    assert absent.returncode == 2, absent.stderr  # no service yet: one line, exit 2
    assert absent.stderr.startswith("grinder: error: --socket: no control socket at ")

    # The service as the README starts it, and its rollback block, through the PATH only.
    port = cli.free_port()
    out = tmp_path / "service.out"
    service = subprocess.Popen(
        ["bash", "-c", f"exec grinder reconcile --metrics-port {port}"],
        cwd=tmp_path,
        env={"HOME": str(home), "PATH": os.pathsep.join(path), **env},
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        cli.wait_http(f"http://127.0.0.1:{port}/readyz", service, out)
        status = shell("grinder control status", home=home, path=path, **env)
        assert status.returncode == 0, status.stderr
        assert '"runtime": {' in status.stdout
        rollback = shell(
            "grinder control set action none && grinder control set dry_run true && "
            "grinder control disarm && grinder control deny-mainnet && grinder control status",
            home=home,
            path=path,
            **env,
        )
        assert rollback.returncode == 0, rollback.stderr
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0, out.read_text()[-2000:]


def test_without_local_bin_on_the_path_the_setup_says_what_to_add(tmp_path: Path) -> None:
    copy, home = clone(tmp_path), tmp_path / "home"
    path = machine_path()
    setup = shell(f"{copy}/bin/setup", home=home, path=path)
    assert setup.returncode == 0, setup.stderr
    told = re.search(r"for the `grinder` command run: (export PATH=\S+)", setup.stderr)
    assert told is not None, setup.stderr
    assert shell("grinder --version", home=home, path=path).returncode == 127
    followed = shell(f"{told.group(1)}; grinder --version", home=home, path=path)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.startswith("grinder, version ")


def test_a_grinder_already_there_is_kept_and_a_dangling_link_replaced(tmp_path: Path) -> None:
    copy, home = clone(tmp_path), tmp_path / "home"
    local_bin = home / ".local" / "bin"
    local_bin.mkdir(parents=True)
    path = [str(local_bin), *machine_path()]
    other = local_bin / "grinder"
    other.write_text("#!/bin/sh\necho another grinder\n")
    other.chmod(0o755)
    setup = shell(f"{copy}/bin/setup", home=home, path=path)
    assert setup.returncode == 0, setup.stderr
    assert f"bin/setup: {other} exists and is left as it is (not a link)" in setup.stderr
    assert other.read_text() == "#!/bin/sh\necho another grinder\n"

    other.unlink()
    other.symlink_to(tmp_path / "removed-clone" / ".venv" / "bin" / "grinder")
    setup = shell(f"{copy}/bin/setup", home=home, path=path)
    assert setup.returncode == 0, setup.stderr
    assert os.readlink(other) == f"{copy}/.venv/bin/grinder"
    assert shell("grinder --version", home=home, path=path).returncode == 0


def test_setup_refuses_an_unknown_argument_and_explains_itself(tmp_path: Path) -> None:
    copy, home = clone(tmp_path), tmp_path / "home"
    path = machine_path()
    typo = shell(f"{copy}/bin/setup --devv", home=home, path=path)
    assert typo.returncode == 2
    assert typo.stderr == (
        "bin/setup: unknown argument '--devv' (expected --dev, or nothing; -h for help)\n"
    )
    assert not (home / ".local").exists()  # refused before doing anything
    helped = shell(f"{copy}/bin/setup -h", home=home, path=path)
    assert helped.returncode == 0
    assert "bin/setup --dev" in helped.stdout
    assert not (home / ".local").exists()


@pytest.mark.parametrize("script", ["run_live_reconcile", "smoke_reconcile_e2e", "drill_bot"])
def test_the_runbook_scripts_take_h(script: str, cli: Any) -> None:
    for flag in ("-h", "--help"):
        helped = cli.run(f"scripts.{script}", flag, env=cli.env(scripts=True), python="python3")
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith(f"Usage: {script} [OPTIONS]"), helped.stdout


def test_the_bin_scripts_take_h(tmp_path: Path) -> None:
    """Each explains itself and does nothing else (``bin/test -h`` runs no test, ``bin/ensure-
    debian-packages -h`` installs nothing); ``bin/run -h`` adds grinder's own help."""
    copy, home = clone(tmp_path), tmp_path / "home"
    path = machine_path()
    for script, says in (
        ("setup", "bin/setup --dev"),
        ("test", "The whole test suite"),
        ("ensure-debian-packages", "bin/ensure-debian-packages PACKAGE:COMMAND"),
    ):
        for flag in ("-h", "--help"):
            helped = shell(f"{copy}/bin/{script} {flag}", home=home, path=path)
            assert (helped.returncode, helped.stderr) == (0, ""), (script, helped.stderr)
            assert says in helped.stdout, (script, helped.stdout)
            assert "==" not in helped.stdout  # bin/test printed no quality gate
    run = shell(f"{copy}/bin/run -h", home=home, path=path)
    assert run.returncode == 0, run.stderr
    assert "Usage: bin/run [grinder ARGS...]" in run.stdout
    assert "Usage: grinder [OPTIONS] COMMAND [ARGS]..." in run.stdout
    bad = shell(f"{copy}/bin/ensure-debian-packages redis-server", home=home, path=path)
    assert (bad.returncode, bad.stderr) == (
        2,
        "bin/ensure-debian-packages: expected PACKAGE:COMMAND, got 'redis-server'\n",
    )
