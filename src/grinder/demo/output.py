"""What the demo prints around the cases: the banner before, the results table after."""

from __future__ import annotations

from collections.abc import Sequence

from grinder.demo.options import RULE, SYMBOL, SYMBOLS, CaseResult, DemoOptions
from grinder.service.artifacts import RunDir, Tee


def print_banner(tee: Tee, opts: DemoOptions, run_dir: RunDir) -> None:
    t = opts.timing
    mode = "LIVE against the SIMULATOR" if opts.live else "DRY-RUN"
    if opts.ceremony:
        mode = "CEREMONY, runbook 13 stages 1 and 2"
    for text in (
        RULE,
        f"  GRINDER DEMO: reconcile -> remediate, end to end ({mode})",
        RULE,
    ):
        tee.line(text)
    if opts.live:
        for text in (
            "  !!! LIVE MODE -- against the bundled SIMULATOR, not Binance !!!",
            "  Every gate is open, for this process only: dry_run=0, allow_active=1, armed=1,",
            "  ALLOW_MAINNET_TRADE=1 (handed to the service, not exported), action=flatten,",
            f"  whitelist {','.join(SYMBOLS)}. GRINDER really cancels and flattens, on the",
            "  simulator. Your environment's gate variables are not read.",
            RULE,
        ):
            tee.line(text)
    if opts.ceremony:
        for text in (
            "  No drift is injected. The service starts with runbook 13's stage-1 settings",
            "  (passive: action=none, dry_run=true, allow_active_remediation=false, not armed,",
            "  ALLOW_MAINNET_TRADE unset; your environment's gate variables are not read) and",
            "  a control socket: check stage 1, open stage 2 with `grinder control`, check it.",
            RULE,
        ):
            tee.line(text)
    for text in (
        "  exchange   the Binance USDⓈ-M simulator, in this process; the mark walk is frozen,",
        "             so every fill is one the demo causes",
        f"  bot        a grid bot on {SYMBOL}, through the real Binance adapter over HTTP",
        "  service    ReconcileService, in this process, reading the bot's expected store",
        "             (in memory, shared: what the service reads is the bot's own record)",
        f"  timings    shortened for the demo: order grace {t.order_grace_ms} ms (default 5000),",
        f"             position grace {t.position_grace_ms} ms (default 3000), full pass every "
        f"{t.full_pass_s:g} s",
        f"             (default 10), snapshot every {t.snapshot_s:g} s (default 30 or more), "
        "cooldown 0 s (default 60)",
        f"  artifacts  {run_dir.path}",
        RULE,
    ):
        tee.line(text)


def print_results(tee: Tee, results: Sequence[CaseResult]) -> None:
    rows = [("case", "expected", "observed", "latency", "verdict")]
    for r in results:
        latency = "-" if r.latency_s is None else f"{r.latency_s:.2f} s"
        rows.append((f"{r.key:<3} {r.title}", r.expected, r.observed, latency, r.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    tee.line()
    tee.line(RULE)
    tee.line("  RESULTS")
    tee.line(RULE)
    for i, row in enumerate(rows):
        cells = [row[c].rjust(widths[c]) if c == 3 else row[c].ljust(widths[c]) for c in range(5)]
        tee.line("  " + "  ".join(cells).rstrip())
        if i == 0:
            tee.line("  " + "  ".join("-" * w for w in widths))
