"""``grinder gates``: which gate blocks this remediation? (runbook 12's first question)

Against the running service: its settings in force (control socket ``/status``:
config, armed, ALLOW_MAINNET_TRADE, whitelist, the cooldown anchors the next run
starts from -- with HA the shared one, the last write of any instance -- and the
age of the bot's heartbeat in the expected state, gate E) and its metrics
(``grinder_ha_is_leader`` for gate 0, the day's budget use). A
``RemediationExecutor`` is built from them and the write is evaluated as the
first candidate of the next run: the chain is listed by
``grinder.reconcile.explain`` and the first blocking reason is the one
``RemediationExecutor.gate`` itself returns.

    grinder gates --symbol BTCUSDT --order grinder_d_BTCUSDT_1_1704067200_1
    grinder gates --symbol BTCUSDT --position
    grinder gates --symbol BTCUSDT --position --notional 120
    grinder gates --symbol BTCUSDT --position --qty 0.002 --price 60000
    grinder gates --symbol BTCUSDT --position --qty 0.002 --venue-url http://127.0.0.1:8765

For a flatten, what is not given comes from the service (control ``/position``):
the quantity is its observed position of the symbol (``--position-side`` picks a
side in hedge mode), the price its mark price read from its venue as a flatten
reads it. ``--notional``, ``--qty``, ``--price`` and ``--venue-url`` win.

Exit 0 when every gate passes (the write would be executed, or planned in
dry-run), 1 when a gate blocks it, 2 for bad usage or an unreachable service.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from grinder.budget.ledger import BudgetState, utc_day
from grinder.budget.tracker import BudgetTracker
from grinder.ceremony.sources import (
    Scrape,
    SourceError,
    fetch_mark_price,
    fetch_scrape,
    fmt_number,
)
from grinder.cli.ceremony import service_status
from grinder.cli.control import call, socket_option
from grinder.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from grinder.cli.options import metrics_url_of, metrics_url_option, url_option
from grinder.clock import wall_clock_ms
from grinder.exchange.fake import FakePort
from grinder.reconcile.actions import RunContext
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.explain import HOW_TO_OPEN, Explanation, Outcome, Verdict, explain
from grinder.reconcile.remediation import RemediationExecutor
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import PositionSide
from grinder.redaction import mask_url


def _decimal(option: str, raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise UsageError(f"{option}: expected a number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise UsageError(f"{option}: expected a number >= 0, got {raw!r}")
    return value


@dataclass
class _Flatten:
    """The flatten to explain: its notional (None: no mark price) and where it came from."""

    notional: Decimal | None
    text: str
    side: str | None = None
    notes: list[str] = field(default_factory=list)


class _ServicePosition:
    """The service's ``/position`` answer for one symbol, asked once, when first needed."""

    def __init__(self, socket: Path, symbol: str) -> None:
        self.socket = socket
        self.symbol = symbol
        self._answer: dict[str, Any] | None = None
        self._error: str | None = None

    def get(self) -> tuple[dict[str, Any] | None, str | None]:
        if self._answer is None and self._error is None:
            route = "/position?" + urllib.parse.urlencode({"symbol": self.symbol})
            try:
                answer = call(str(self.socket), "GET", route)
            except UsageError as exc:
                self._error = exc.format_message()
            else:
                if isinstance(answer, dict) and isinstance(answer.get("positions"), list):
                    self._answer = answer
                else:
                    self._error = f"control {route}: unexpected answer"
        return self._answer, self._error

    def need(self, why: str) -> dict[str, Any]:
        """The answer, or a one-line ``UsageError``: ``why`` and what went wrong asking."""
        answer, error = self.get()
        if answer is None:
            raise UsageError(f"{why} ({error})")
        return answer


def _pick_side(
    symbol: str, positions: list[dict[str, Any]], side: str | None
) -> tuple[str | None, Decimal]:
    """The side to flatten and its quantity, from the service's positions of ``symbol``."""
    held = {str(p.get("position_side")): Decimal(str(p.get("qty", "0"))) for p in positions}
    if side is not None:
        return side, held.get(side, Decimal(0))
    if len(held) > 1:
        *others, last = sorted(held)
        raise UsageError(
            f"--position: the service holds {symbol} {', '.join(others)} and {last} positions "
            f"(hedge mode): give --position-side {' or '.join(sorted(held))}"
        )
    if not held:
        return None, Decimal(0)
    ((only, qty),) = held.items()
    return only, qty


def _flatten(
    symbol: str,
    notional: str | None,
    qty: str | None,
    price: str | None,
    venue_url: str | None,
    side: str | None,
    service: _ServicePosition,
) -> _Flatten:
    given = _decimal("--notional", notional)
    if given is not None:
        if qty is not None or price is not None:
            raise UsageError("--notional: give either --notional or --qty with a price")
        return _Flatten(given, f"notional {given} USDT (--notional)", side)
    notes: list[str] = []
    amount = _decimal("--qty", qty)
    qty_from = "--qty"
    if amount is None:
        answer = service.need(
            "--position needs --notional, or --qty with --price or --venue-url: "
            "the service does not report its position"
        )
        if answer.get("snapshot_age_s") is None:
            raise UsageError(
                f"--position: the service has no snapshot yet, so its {symbol} position is not "
                "known; try again in a moment, or give --qty"
            )
        side, amount = _pick_side(symbol, answer["positions"], side)
        qty_from = "the service's observed position"
        step = answer.get("step_size")
        if step is not None and Decimal(str(step)) > 0:
            # What a flatten would send: the quantity rounded down to the market step.
            unit = Decimal(str(step))
            rounded = (abs(amount) / unit).to_integral_value(rounding=ROUND_DOWN) * unit
            if rounded != abs(amount):
                qty_from += f", {abs(amount)} rounded down to the step {unit}"
            amount = rounded if amount >= 0 else -rounded
        if amount == 0:
            notes.append(
                f"the service sees no {symbol} position{f' {side}' if side else ''}: "
                "a flatten would be skipped (already_resolved); the chain is shown for notional 0"
            )
    mark = _decimal("--price", price)
    where = "--price"
    if mark is None and venue_url is not None:
        try:
            mark = fetch_mark_price(venue_url, symbol)
        except SourceError as exc:
            return _Flatten(
                None, f"no mark price ({exc}): gate 9 blocks with price_unavailable", side, notes
            )
        where = f"mark price from {mask_url(venue_url)}"
    if mark is None:
        answer = service.need(
            "--qty needs --price or --venue-url (to read the mark price): "
            "the service does not report one"
        )
        raw = answer.get("mark_price")
        if raw is None:
            why = answer.get("mark_price_error") or "none given"
            return _Flatten(
                None,
                f"no mark price from the service ({why}): gate 9 blocks with price_unavailable",
                side,
                notes,
            )
        mark = Decimal(str(raw))
        where = f"mark price from the service's venue {answer.get('venue')}"
    if qty_from != "--qty":
        where = f"{qty_from}; {where}"
    value = abs(amount) * mark
    return _Flatten(value, f"notional {value} USDT = |{amount}| x {mark} ({where})", side, notes)


def build_executor(
    status: dict[str, Any], scrape: Scrape | None, now_ms: int
) -> tuple[RemediationExecutor, RunContext, list[str]]:
    """An executor with the service's settings in force, and the next run's context."""
    notes: list[str] = []
    raw = status.get("config", {})
    known = {k: v for k, v in raw.items() if k in ReconcileConfig.model_fields}
    config = ReconcileConfig.model_validate(known)
    leader_value = scrape.value("grinder_ha_is_leader") if scrape else None
    if leader_value is None:
        notes.append("grinder_ha_is_leader unknown: gate 0 evaluated as leader")
    leader = leader_value is None or leader_value == 1
    budget = BudgetTracker(config=config, store=None, clock=lambda: now_ms)
    calls = scrape.value("grinder_reconcile_budget_calls_used_day") if scrape else None
    notional = scrape.value("grinder_reconcile_budget_notional_used_day") if scrape else None
    if calls is None or notional is None:
        day = status.get("budget", {})
        calls = float(day.get("calls_used_day", 0))
        notional = float(day.get("notional_used_day", 0))
        notes.append("budget use from /status (the service's metrics were not read)")
    budget.state = BudgetState(
        day=utc_day(now_ms),
        calls_used_day=int(calls),
        notional_used_day=Decimal(fmt_number(notional)),
        updated_ts_ms=now_ms,
    )
    expected_age = _expected_age(status, scrape, notes)
    executor = RemediationExecutor(
        config=config,
        port=FakePort(),
        armed=bool(status.get("armed")),
        symbol_whitelist=list(status.get("symbol_whitelist", config.symbol_whitelist)),
        budget=budget,
        is_leader=lambda: leader,
        env={"ALLOW_MAINNET_TRADE": "1"} if status.get("allow_mainnet_trade") else {},
        clock=lambda: now_ms,
        expected_heartbeat_age=lambda: expected_age,
        operator=ReportedOperatorState(_operator_problem(status)),
    )
    live_anchor, dry_anchor = _cooldown_anchors(status, scrape, config, notes)
    ctx = RunContext(
        run_id="grinder-gates",
        started_ms=now_ms,
        live_anchor_ms=live_anchor,
        dry_anchor_ms=dry_anchor,
    )
    return executor, ctx, notes


@dataclass(frozen=True)
class ReportedOperatorState:
    """Gate O as the service reported it (``/status`` → ``operator.problem``): read, not
    re-read; the explainer sends nothing, so it marks no write."""

    problem: str | None

    def refresh(self) -> None:
        """Nothing to read again: the service's own reading is the one shown."""

    def begin_write(self) -> None:
        """The explainer never writes."""

    def end_write(self) -> None:
        """The explainer never writes."""


def _operator_problem(status: dict[str, Any]) -> str | None:
    operator = status.get("operator")
    problem = operator.get("problem") if isinstance(operator, dict) else None
    return problem if isinstance(problem, str) else None


EXPECTED_AGE_METRIC = "grinder_reconcile_expected_heartbeat_age_seconds"


def _expected_age(status: dict[str, Any], scrape: Scrape | None, notes: list[str]) -> float:
    """Gate E's input as the service sees it: the age of the bot's heartbeat in its expected
    state (``math.inf``: never written by a bot), from ``/status``, else its gauge."""
    expected = status.get("expected")
    if isinstance(expected, dict) and "heartbeat_age_s" in expected:
        age = expected["heartbeat_age_s"]
        if age is None:
            return math.inf
        if isinstance(age, int | float) and not isinstance(age, bool):
            return float(age)
    value = scrape.value(EXPECTED_AGE_METRIC) if scrape else None
    if value is not None:
        notes.append(f"gate E from {EXPECTED_AGE_METRIC} (the service's /status does not say)")
        return value
    notes.append(
        "the service reports no expected-state heartbeat: gate E evaluated as never written"
    )
    return math.inf


def _expected_source(status: dict[str, Any]) -> str:
    expected = status.get("expected")
    if not isinstance(expected, dict):
        return "expected state: not reported by the service"
    line = f"expected state: {expected.get('where')} ({expected.get('source')}), via /status"
    hint = expected.get("hint")
    return line + (f"; {hint}" if hint else "")


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cooldown_anchors(
    status: dict[str, Any], scrape: Scrape | None, config: ReconcileConfig, notes: list[str]
) -> tuple[int | None, int | None]:
    """Gate 6's anchors as the service's next run would read them: (live, dry-run)."""
    cooldown = status.get("cooldown")
    if isinstance(cooldown, dict):
        # What RemediationExecutor.begin_run computes, read by the service just now (with
        # HA: the shared anchor, the last write of any instance).
        return _ms(cooldown.get("live_anchor_ts_ms")), _ms(cooldown.get("dry_run_anchor_ts_ms"))
    # A service that does not report its anchors: this instance's own last write only.
    notes.append(
        "the service does not report its cooldown anchors: gate 6 evaluated from this "
        "instance's grinder_reconcile_last_remediation_ts_ms (with HA, another instance's "
        "write may hold it closed)"
    )
    last = scrape.value("grinder_reconcile_last_remediation_ts_ms") if scrape else None
    last_ms = int(last) if last else None
    if scrape is None:
        notes.append("cooldown: last remediation time unknown (metrics not read)")
    planned = _ms(status.get("last_planned_ts_ms"))
    dry_anchor = max((t for t in (last_ms, planned) if t is not None), default=None)
    ever_planned = scrape.total("grinder_reconcile_action_planned_total") if scrape else None
    if config.dry_run and planned is None and ever_planned != 0:
        notes.append(
            "dry-run cooldown also runs from the last plan, which the service does not export: "
            "evaluated from the last execution only"
        )
    return last_ms, dry_anchor


def _cooldown_source(status: dict[str, Any]) -> str:
    cooldown = status.get("cooldown")
    if not isinstance(cooldown, dict):
        return "cooldown anchor: grinder_reconcile_last_remediation_ts_ms (this instance)"
    if cooldown.get("source") == "redis":
        return "cooldown anchor: shared in Redis (the last write of any instance), via /status"
    return "cooldown anchor: this instance's last write, via /status"


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
        flat = _flatten(
            symbol,
            notional,
            qty,
            price,
            venue_url,
            position_side,
            _ServicePosition(socket, symbol),
        )
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
    now_ms = wall_clock_ms()
    executor, ctx, more = build_executor(status, scrape, now_ms)
    notes += more
    exp = explain(executor, kind, symbol, order_id, value, ctx)
    reason = executor.gate(kind, symbol, order_id, value, ctx)
    if reason != exp.first_block:
        notes.append(
            f"explain and RemediationExecutor.gate disagree ({exp.first_block} vs {reason}): "
            "please report this"
        )
    if order_id:
        subject = f"cancel {symbol} {order_id}"
    else:
        subject = f"flatten {symbol}" + (f" {side}" if side and side != "BOTH" else "")
    leader = scrape.value("grinder_ha_is_leader") if scrape else None
    context = [
        f"service: venue {status.get('venue')}, mode {status.get('mode')} "
        f"(control /status via {socket})",
        f"metrics: {mask_url(url)} (grinder_ha_is_leader {fmt_number(leader)})",
        _cooldown_source(status),
        _expected_source(status),
        f"{notional_text}; evaluated as the first candidate of the next run",
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "subject": subject,
                    "mode": exp.mode,
                    "outcome": exp.outcome.value,
                    "first_block": exp.first_block.value if exp.first_block else None,
                    "gate_reason": reason.value if reason else None,
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
        )
    else:
        click.echo(render(exp, subject, context, reason.value if reason else None, notes))
    return EXIT_OK if exp.outcome is not Outcome.BLOCKED else EXIT_FAILED
