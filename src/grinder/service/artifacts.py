"""The per-run artifact directory (runbook 13, M4.1).

With ``GRINDER_ARTIFACTS_DIR`` set, each run writes
``$GRINDER_ARTIFACTS_DIR/<YYYY-MM-DD>/run_<HHMMSS>_<micro>_<pid>/`` — names
sort in start order, so ``ls -d …/run_* | tail -1`` is the latest — holding
``stdout.log`` (config summary and exit code), ``audit.jsonl``,
``metrics.prom``, ``metrics_summary.json`` and ``budget_state.json``. Day
folders older than ``GRINDER_ARTIFACT_TTL_DAYS`` are removed at start-up.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from grinder.fileio import write_bytes_atomic, write_json_atomic
from grinder.reconcile.config import ConfigError
from grinder.redaction import mask_secrets
from grinder.reporting.metrics import exposition

log = logging.getLogger("grinder.service.artifacts")

STDOUT_LOG = "stdout.log"
AUDIT = "audit.jsonl"
METRICS_PROM = "metrics.prom"
METRICS_SUMMARY = "metrics_summary.json"
BUDGET_STATE = "budget_state.json"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def create(cls, root: Path, now: datetime, pid: int | None = None) -> RunDir:
        day = now.astimezone(UTC).strftime("%Y-%m-%d")
        name = f"run_{now.astimezone(UTC).strftime('%H%M%S_%f')}_{pid or os.getpid()}"
        path = root / day / name
        try:
            path.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise ConfigError(
                f"GRINDER_ARTIFACTS_DIR: cannot create run directory {path} ({exc.strerror})"
            ) from None
        return cls(path)

    @property
    def stdout_log(self) -> Path:
        return self.path / STDOUT_LOG

    @property
    def audit(self) -> Path:
        return self.path / AUDIT

    @property
    def metrics_prom(self) -> Path:
        return self.path / METRICS_PROM

    @property
    def metrics_summary(self) -> Path:
        return self.path / METRICS_SUMMARY

    @property
    def budget_state(self) -> Path:
        return self.path / BUDGET_STATE


def clean_old_days(root: Path, ttl_days: float, today: date) -> list[Path]:
    """Remove ``<YYYY-MM-DD>`` folders older than the TTL; other entries are left alone."""
    if not root.is_dir():
        return []
    try:
        cutoff = today - timedelta(days=ttl_days)
    except OverflowError:  # a TTL longer than the calendar: nothing is that old
        return []
    removed: list[Path] = []
    for entry in sorted(root.iterdir()):
        try:
            day = datetime.strptime(entry.name, "%Y-%m-%d").date()
        except ValueError:
            continue
        if entry.is_dir() and day < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class Tee:
    """Writes the service's human output to stdout and to ``stdout.log``, each line
    through ``mask_secrets`` (a URL's password, a registered secret never gets there)."""

    def __init__(self, path: Path | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._file: TextIO | None = None
        if path is not None:
            self._file = path.open("a", encoding="utf-8")

    def line(self, text: str = "") -> None:
        text = mask_secrets(text)
        self.stream.write(text + "\n")
        self.stream.flush()
        if self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()

    def record(self, text: str) -> None:
        """A line for ``stdout.log`` only (what stderr already shows, such as the error)."""
        if self._file is not None:
            self._file.write(mask_secrets(text) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def final_metrics_path(metrics_out: Path | None, run_dir: RunDir | None) -> Path | None:
    """Where the final metrics go: ``--metrics-out``, else the run directory's."""
    return metrics_out or (run_dir.metrics_prom if run_dir else None)


def write_metrics_prom(path: Path, registry: CollectorRegistry) -> None:
    write_bytes_atomic(path, exposition(registry))


def metrics_summary(registry: CollectorRegistry) -> dict[str, Any]:
    """Every ``grinder_*`` sample as ``name{labels}`` → value (counters, gauges).

    A value JSON cannot hold (the snapshot age is +Inf before the first snapshot)
    is the string Prometheus writes for it: ``"+Inf"``, ``"-Inf"``, ``"NaN"``; a whole
    number is an integer (a ``…_ts_ms`` timestamp reads 1796662474179, not 1.796662474179e+12)."""
    text = exposition(registry).decode()
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("grinder_"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            out[key] = _json_value(sample.value)
    return out


def _json_value(value: float) -> int | float | str:
    if math.isfinite(value):
        return int(value) if value == int(value) else value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def write_metrics_summary(path: Path, registry: CollectorRegistry, extra: dict[str, Any]) -> None:
    write_json_atomic(path, {"metrics": metrics_summary(registry), **extra})
