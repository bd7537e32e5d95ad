"""Reading the service's event log (``--log-file``) for runbook 13's reviews.

Lines are ``<time> <LEVEL> <logger> EVENT key=value …`` (``grinder.reporting.logs``).
A mismatch incident is logged once when detected (``RECONCILE_MISMATCH``) and
once when it clears (``RECONCILE_MISMATCH_CLEARED``); an incident with no clear
line is unresolved. Incidents live in the process that detected them: a new
process detects what still stands again, so only the lines of the latest
process count (the process is the middle part of ``run_id=<ms>-<process>-<n>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from grinder.ceremony.sources import SourceError

_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
_RUN_ID = re.compile(r"^\d+-([0-9a-f]+)-\d+$")


def fields_of(line: str, event: str) -> dict[str, str] | None:
    """The ``key=value`` fields after ``event`` on a log line, None if the event is absent."""
    marker = f" {event} "
    at = line.find(marker)
    if at < 0:
        if not line.rstrip().endswith(f" {event}"):
            return None
        return {}
    out: dict[str, str] = {}
    for key, value in _FIELD.findall(line[at + len(marker) :]):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key] = value
    return out


def _process(run_id: str | None) -> str | None:
    if run_id is None:
        return None
    m = _RUN_ID.match(run_id)
    return m.group(1) if m else None


@dataclass
class LogReview:
    path: Path
    lines: int = 0
    detected: int = 0
    cleared: int = 0
    unresolved: list[str] = field(default_factory=list)
    event_counts: dict[str, int] = field(default_factory=dict)
    last_lines: dict[str, list[str]] = field(default_factory=dict)
    targets: dict[str, set[str]] = field(default_factory=dict)
    """Distinct orders / positions each of ``events`` was about."""


def review(path: Path, events: tuple[str, ...] = (), keep_last: int = 3) -> LogReview:
    """Mismatch incidents of the latest process, and counts / last lines of ``events``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    result = LogReview(path)
    incidents: dict[str | None, dict[tuple[str, ...], str]] = {}
    latest: str | None = None
    for line in text.splitlines():
        result.lines += 1
        for event in events:
            found = fields_of(line, event)
            if found is not None:
                result.event_counts[event] = result.event_counts.get(event, 0) + 1
                result.targets.setdefault(event, set()).add(_describe(found))
                kept = result.last_lines.setdefault(event, [])
                kept.append(line.strip())
                del kept[:-keep_last]
        run = fields_of(line, "RECONCILE_RUN")
        if run is not None:
            latest = _process(run.get("run_id")) or latest
            continue
        cleared = fields_of(line, "RECONCILE_MISMATCH_CLEARED")
        if cleared is not None:
            result.cleared += 1
            proc = _process(cleared.get("run_id"))
            incidents.setdefault(proc, {}).pop(_identity(cleared), None)
            continue
        detected = fields_of(line, "RECONCILE_MISMATCH")
        if detected is not None:
            result.detected += 1
            proc = _process(detected.get("run_id"))
            latest = proc or latest
            incidents.setdefault(proc, {})[_identity(detected)] = _describe(detected)
    standing = incidents.get(latest, {}) if latest is not None else {}
    if latest is None:  # run ids not recognised: the whole file is one process
        standing = {k: v for group in incidents.values() for k, v in group.items()}
    result.unresolved = sorted(standing.values())
    return result


def _identity(f: dict[str, str]) -> tuple[str, ...]:
    return (
        f.get("type", ""),
        f.get("symbol", ""),
        f.get("client_order_id", ""),
        f.get("position_side", ""),
    )


def _describe(f: dict[str, str]) -> str:
    what = f.get("client_order_id") or f.get("position_side") or ""
    return " ".join(x for x in (f.get("type", "?"), f.get("symbol", "?"), what) if x)
