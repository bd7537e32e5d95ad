"""docs/ARCHITECTURE.md maps each concept to its home: every module it names exists.

A path (``reconcile/gates.py``, ``state/sqlite*.py``) is under ``src/grinder`` or the
repository's root; a bare file name (``weights.py``, named beside its package's full path)
is a file somewhere under ``src/grinder``.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "grinder"
MODULE = re.compile(r"`([\w/*.\-]+\.py)\b")


def exists(name: str) -> bool:
    if "/" in name:
        return any(SRC.glob(name)) or any(REPO.glob(name))
    return any(SRC.rglob(name))


def missing(text: str) -> list[str]:
    return [name for name in sorted(set(MODULE.findall(text))) if not exists(name)]


def test_every_module_the_map_names_exists() -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert len(MODULE.findall(text)) > 50
    assert missing(text) == []


def test_a_moved_module_is_caught() -> None:
    assert missing("| x | `reconcile/remediation.py`, `reconcile/gates.py` |") == [
        "reconcile/remediation.py"
    ]
    assert missing("`nowhere_at_all.py`, `weights.py`") == ["nowhere_at_all.py"]
