"""The key and JSON-type differences of two payloads (``shape_diff``)."""

from __future__ import annotations

from typing import Any


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def shape_diff(
    ours: Any,
    theirs: Any,
    path: str = "",
    *,
    absent_ok: frozenset[str] = frozenset(),
    extra_ok: frozenset[str] = frozenset(),
    loose_types: frozenset[str] = frozenset(),
) -> list[str]:
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out: list[str] = []
        for key, value in theirs.items():
            if key not in ours:
                if key not in absent_ok:
                    out.append(f"{path}.{key} missing")
            elif key not in loose_types:
                out += shape_diff(
                    ours[key],
                    value,
                    f"{path}.{key}",
                    absent_ok=absent_ok,
                    extra_ok=extra_ok,
                    loose_types=loose_types,
                )
        out += [f"{path}.{k} extra" for k in ours if k not in theirs and k not in extra_ok]
        return out
    if isinstance(theirs, list) and isinstance(ours, list):
        if theirs and ours:
            return shape_diff(
                ours[0],
                theirs[0],
                f"{path}[0]",
                absent_ok=absent_ok,
                extra_ok=extra_ok,
                loose_types=loose_types,
            )
        return []
    return [] if _kind(ours) == _kind(theirs) else [f"{path}: {_kind(ours)} != {_kind(theirs)}"]
