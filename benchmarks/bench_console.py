"""The console page with 1,000 open incidents: the page model and its HTML, timed.

    .venv/bin/python benchmarks/bench_console.py [--quick] [--incidents N]

Prints the median time of one render (model + HTML) and the page's size.
"""

from __future__ import annotations

import argparse
import statistics
import time

from grinder.console.page import console_page, incident_view
from grinder.console.render import render_console
from grinder.incidents.records import Evidence, IncidentRecord
from grinder.reconcile.labels import IncidentCause
from grinder.reconcile.types import MismatchType

STATUS = {
    "venue": "sim",
    "mode": "dry_run",
    "armed": False,
    "ha": {"enabled": False, "leader": True},
    "budget": {"calls_remaining_day": 5, "notional_remaining_day": "500"},
    "settings": {"armed": {"value": False, "source": "default"}},
    "operator": {"rollbacks": [], "words": []},
}


def records(n: int) -> list[IncidentRecord]:
    return [
        IncidentRecord(
            id=f"INC-{i:010d}",
            type=MismatchType.POSITION_NONZERO_UNEXPECTED,
            symbol="BTCUSDT",
            subject="BOTH",
            first_seen_ms=1_700_000_000_000 + i,
            last_seen_ms=1_700_000_000_000 + i,
            opened_run_id="r",
            cause=IncidentCause.MANUAL,
            evidence=(Evidence("fill", "order web_x filled 0.01", i, (("qty", "0.01"),)),),
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--incidents", type=int, default=1000)
    args = parser.parse_args()
    recs = records(args.incidents)
    rounds = 3 if args.quick else 10
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        now = 1_700_000_100_000
        views = [incident_view(r, "no remediation: alert_only", now) for r in recs]
        html = render_console(console_page(STATUS, views, [], now))
        times.append(time.perf_counter() - start)
        size = len(html)
    median_ms = statistics.median(times) * 1000
    print(
        f"console render: {args.incidents} open incidents, median {median_ms:.1f} ms "
        f"over {rounds} rounds, page {size / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    main()
