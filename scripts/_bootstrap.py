"""Run the runbook commands in the project's virtual environment.

``PYTHONPATH=src python3 -m scripts.<name>`` may start under an interpreter
that lacks the pinned dependencies. Then this re-executes the same command with
``.venv/bin/python`` (creating ``.venv`` through ``bin/setup`` if it is missing).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
REQUIRED = ("click", "prometheus_client", "pydantic")


def ensure_environment(module: str) -> None:
    if all(importlib.util.find_spec(name) is not None for name in REQUIRED):
        return
    if os.environ.get("GRINDER_BOOTSTRAPPED") == "1":
        print(
            f"{module}: error: dependencies missing in {sys.executable}; run bin/setup",
            file=sys.stderr,
        )
        sys.exit(2)
    if not VENV_PYTHON.exists():
        setup = subprocess.run([str(ROOT / "bin" / "setup")], check=False)
        if setup.returncode != 0 or not VENV_PYTHON.exists():
            print(f"{module}: error: bin/setup failed; cannot run", file=sys.stderr)
            sys.exit(2)
    os.environ["GRINDER_BOOTSTRAPPED"] = "1"
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), "-m", module, *sys.argv[1:]])
