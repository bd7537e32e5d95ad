"""Every benchmark runs end to end in its quickest mode, with the flag the README names.

Each runs once as a subprocess (``python -m benchmarks.NAME``): it must exit 0
and print its title and table header. Figures are not checked: benchmarks
never assert on time.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.subprocess


@pytest.mark.parametrize(
    ("module", "flag", "expected"),
    [
        pytest.param(
            "bench_detection",
            "--quick",
            ("detection pass: ReconcileEngine.detect", "orders", "ms/pass", "10,000 orders"),
            id="detection",
        ),
        pytest.param(
            "bench_stream",
            "--quick",
            ("user-data events: parse_user_event", "events:        20,000", "best of 1:", "rate:"),
            id="stream",
        ),
        pytest.param(
            "bench_expected_store",
            "--quick",
            ("SqliteExpectedStore, 10,000 orders", "refresh(), nothing changed"),
            id="expected_store",
        ),
        pytest.param(
            "bench_snapshot",
            "--quick",
            ("REST snapshot (openOrders + openAlgoOrders", "form", "median ms", "p90 ms"),
            id="snapshot",
        ),
        pytest.param(
            "bench_service",
            "--smoke",
            (
                "GRINDER service at default settings",
                "a. detection latency",
                "b. vanished expected order",
                "c. request weight",
                "figure",
                "verdict",
            ),
            id="service",
        ),
        pytest.param(
            "bench_console",
            "--quick",
            ("console render: 1000 open incidents", "median"),
            id="console",
        ),
    ],
)
def test_benchmark_runs_and_prints_its_table(
    cli: Any, module: str, flag: str, expected: tuple[str, ...]
) -> None:
    proc = cli.run(f"benchmarks.{module}", flag, cwd=cli.repo, timeout=75)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout[-3000:]}"


@pytest.mark.redis
def test_the_console_benchmark_under_ha_runs_and_prints_its_table(cli: Any) -> None:
    """``bench_console --ha``: a private redis-server, two service processes; one small round."""
    args = ("--ha", "--counts", "3", "--requests", "2")
    proc = cli.run("benchmarks.bench_console", *args, cwd=cli.repo, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in ("console under HA", "CPU ms/req", "redis cmds/req"):
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout[-3000:]}"
    rows = [line.split()[:2] for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert rows == [["3", "leader"], ["3", "follower"]], proc.stdout
