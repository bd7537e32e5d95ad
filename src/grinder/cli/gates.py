"""``grinder gates``: which gate blocks this remediation? (runbook 12's first question)

Against the running service: its settings in force (control socket ``/status``:
config, armed, ALLOW_MAINNET_TRADE, whitelist, the cooldown anchors the next run
starts from -- with HA the shared one, the last write of any instance -- and the
age of the bot's heartbeat in the expected state, gate E) and its metrics
(``grinder_ha_is_leader`` for gate 0, the day's budget use), read by
``grinder.cli.gates_reading``. The write is evaluated as the first candidate of the
next run over the inputs ``gate_inputs_from`` builds from those readings -- the
function the executor builds its own with (``RemediationExecutor.gate_inputs``): the
chain is listed by ``grinder.reconcile.explain`` and the first blocking reason is
the one ``RemediationExecutor.gate`` returns over such inputs (``first_block``).

    grinder gates --symbol BTCUSDT --order grinder_d_BTCUSDT_1_1704067200_1
    grinder gates --symbol BTCUSDT --position
    grinder gates --symbol BTCUSDT --position --notional 120
    grinder gates --symbol BTCUSDT --position --qty 0.002 --price 60000
    grinder gates --symbol BTCUSDT --position --qty 0.002 --venue-url http://127.0.0.1:8765

For a flatten, what is not given comes from the service (control ``/position``,
``grinder.cli.gates_flatten``): the quantity is its observed position of the symbol
(``--position-side`` picks a side in hedge mode), the price its mark price read from
its venue as a flatten reads it. ``--notional``, ``--qty``, ``--price`` and
``--venue-url`` win.

Exit 0 when every gate passes (the write would be executed, or planned in
dry-run), 1 when a gate blocks it, 2 for bad usage or an unreachable service.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from grinder.ceremony.sources import Scrape, SourceError, fetch_scrape, fmt_number
from grinder.cli.ceremony import service_status
from grinder.cli.control import socket_option
from grinder.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from grinder.cli.gates_flatten import ServicePosition, flatten_asked
from grinder.cli.gates_reading import cooldown_source, expected_source, read_service
from grinder.cli.options import metrics_url_of, metrics_url_option, url_option
from grinder.clock import wall_clock_ms
from grinder.reconcile.explain import HOW_TO_OPEN, Explanation, Outcome, Verdict, explanation_of
from grinder.reconcile.gate_inputs import ProposedWrite
from grinder.reconcile.gates import first_block
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import PositionSide
from grinder.redaction import mask_url


def render(
    exp: Explanation, subject: str, context: list[str], gate_reason: str | None, notes: list[str]
) -> str:
    lines = [f"GRINDER gate chain — {subject}"]
    lines += [f"  {c}" for c in context]
    lines.append("")
    lines.append(f"  {'gate':<8}{'check':<27}{'verdict':<15}detail")
    for c in exp.checks:
        verdict = c.verdict.value.upper() if c.verdict is Verdict.FAIL else c.verdict.value
        lines.append(f"  {c.gate:<8}{c.name:<27}{verdict:<15}{c.detail}")
    lines.append("")
    block = exp.first_blocking_check
    if block is not None and block.reason is not None:
        lines.append(
            f"First blocking gate: {block.gate} {block.name} — reason {block.reason.value}"
        )
        lines.append(f"  to open it: {HOW_TO_OPEN.get(block.reason, 'see runbook 12')}")
    lines.append(f"RemediationExecutor.gate: {gate_reason or 'None (every gate passes)'}")
    verdicts = {
        Outcome.BLOCKED: "BLOCKED — nothing would be sent",
        Outcome.PLANNED: "PLANNED — dry-run: would be counted as planned, nothing sent",
        Outcome.EXECUTE: "EXECUTE — every gate passes: the write would be sent",
    }
    lines.append(f"Outcome: {verdicts[exp.outcome]}")
    lines += [f"Note: {n}" for n in notes]
    return "\n".join(lines)


def _context(
    status: dict[str, Any], socket: Path, url: str, scrape: Scrape | None, notional_text: str
) -> list[str]:
    """Where each reading came from, as the lines under the title."""
    leader = scrape.value("grinder_ha_is_leader") if scrape else None
    return [
        f"service: venue {status.get('venue')}, mode {status.get('mode')} "
        f"(control /status via {socket})",
        f"metrics: {mask_url(url)} (grinder_ha_is_leader {fmt_number(leader)})",
        cooldown_source(status),
        expected_source(status),
        f"{notional_text}; evaluated as the first candidate of the next run",
    ]


def as_json_text(
    exp: Explanation, subject: str, context: list[str], gate_reason: str | None, notes: list[str]
) -> str:
    return json.dumps(
        {
            "subject": subject,
            "mode": exp.mode,
            "outcome": exp.outcome.value,
            "first_block": exp.first_block.value if exp.first_block else None,
            "gate_reason": gate_reason,
            "checks": [
                {
                    "gate": c.gate,
                    "name": c.name,
                    "verdict": c.verdict.value,
                    "reason": c.reason.value if c.reason else None,
                    "detail": c.detail,
                }
                for c in exp.checks
            ],
            "context": context,
            "notes": notes,
        },
        indent=2,
    )


@click.command("gates")
@click.option("--symbol", required=True, help="The symbol, e.g. BTCUSDT.")
@click.option(
    "--order",
    "order_id",
    default=None,
    metavar="CLIENT_ORDER_ID",
    help="Explain a cancel of this order (its client order id).",
)
@click.option("--position", is_flag=True, help="Explain a flatten of the symbol's position.")
@click.option("--notional", default=None, metavar="USDT", help="Position notional (flatten).")
@click.option(
    "--qty",
    default=None,
    metavar="QTY",
    help="Position quantity (flatten); default: the service's observed position.",
)
@click.option(
    "--position-side",
    type=click.Choice([s.value for s in PositionSide]),
    default=None,
    help="The side to flatten in hedge mode (default: the one side the service sees).",
)
@click.option(
    "--price",
    default=None,
    metavar="PRICE",
    help="Mark price (flatten); default: the service's, read from its venue.",
)
@url_option(
    "--venue-url",
    help="Read the mark price from this venue (GET /fapi/v1/premiumIndex) instead.",
)
@metrics_url_option
@socket_option
@click.option("--json", "as_json", is_flag=True, help="Print the chain as JSON.")
def gates(
    symbol: str,
    order_id: str | None,
    position: bool,
    notional: str | None,
    qty: str | None,
    position_side: str | None,
    price: str | None,
    venue_url: str | None,
    metrics_url: str | None,
    socket_path: str | None,
    as_json: bool,
) -> int:
    """Show the whole gate chain (0-9, E, limits, budget) for a cancel or a flatten."""
    if (order_id is None) == (not position):
        raise UsageError("give exactly one of --order CLIENT_ORDER_ID or --position")
    if order_id is not None and (notional or qty or price or venue_url or position_side):
        raise UsageError(
            "--notional/--qty/--position-side/--price/--venue-url apply to --position only"
        )
    kind = ActionKind.CANCEL if order_id is not None else ActionKind.FLATTEN
    status, socket = service_status(socket_path)
    notes: list[str] = []
    side = None
    if kind is ActionKind.FLATTEN:
        service = ServicePosition(socket, symbol)
        flat = flatten_asked(symbol, notional, qty, price, venue_url, position_side, service)
        value, notional_text, side = flat.notional, flat.text, flat.side
        notes += flat.notes
    else:
        value, notional_text = Decimal(0), "cancel: no notional"
    url = metrics_url_of(metrics_url, status)
    try:
        scrape: Scrape | None = fetch_scrape(url)
    except SourceError as exc:
        scrape = None
        notes.append(f"metrics not read: {exc}")
    reading = read_service(status, scrape, wall_clock_ms())
    notes += reading.notes
    inputs = reading.gate_inputs(ProposedWrite(kind, symbol, order_id, value))
    exp = explanation_of(inputs)
    reason = first_block(inputs)
    if reason != exp.first_block:
        notes.append(
            f"explain and RemediationExecutor.gate disagree ({exp.first_block} vs {reason}): "
            "please report this"
        )
    if order_id:
        subject = f"cancel {symbol} {order_id}"
    else:
        subject = f"flatten {symbol}" + (f" {side}" if side and side != "BOTH" else "")
    context = _context(status, socket, url, scrape, notional_text)
    gate_reason = reason.value if reason else None
    if as_json:
        click.echo(as_json_text(exp, subject, context, gate_reason, notes))
    else:
        click.echo(render(exp, subject, context, gate_reason, notes))
    return EXIT_OK if exp.outcome is not Outcome.BLOCKED else EXIT_FAILED
