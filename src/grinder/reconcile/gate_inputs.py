"""What the gate chain reads about one write, built in one place: ``gate_inputs_from``.

The executor (``RemediationExecutor.gate_inputs``) reads its live objects -- the settings
in force, the operator state, leadership, the clock, the bot's heartbeat, the run, the
budget -- and hands the readings here; ``grinder gates`` hands what the running service
reports. Both get the same ``GateInputs`` for the same readings, so the chain
(``grinder.reconcile.gates.GATES``) judges a write the same way wherever it is asked.
Pure: no clock, no environment, no I/O; every reading is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from grinder.budget.ledger import BudgetState, budget_verdict
from grinder.reconcile.actions import RunContext
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.gates import GateInputs
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import ZERO

SHADOW_NOTE = " (dry-run: the in-memory shadow budget)"


@dataclass(frozen=True, slots=True)
class ProposedWrite:
    """The write the chain is asked about."""

    kind: ActionKind
    symbol: str
    client_order_id: str | None
    notional: Decimal | None
    """A flatten's notional; None without a mark price (or before it is read)."""


@dataclass(frozen=True, slots=True)
class GateSettings:
    """The settings in force the chain reads: the configuration (gates 1-3, 6-9, E, the
    limits and the budget's), arming (gate 4), the whitelist in force (gate 7) and
    whether ``ALLOW_MAINNET_TRADE=1`` is in the gate environment (gate 5)."""

    config: ReconcileConfig
    armed: bool
    symbol_whitelist: tuple[str, ...]
    mainnet_trade_allowed: bool


def gate_inputs_from(
    write: ProposedWrite,
    settings: GateSettings,
    *,
    is_leader: bool,
    now_ms: int,
    heartbeat_age_s: float | None,
    run: RunContext,
    day: BudgetState,
    operator_problem: str | None,
) -> GateInputs:
    """Everything the chain reads about ``write``, from these readings.

    ``heartbeat_age_s``: seconds since a bot last wrote the expected state (``inf``:
    never; None: no expected-state source at all). ``run``: the run this write belongs
    to (its cooldown anchors, actions, symbols and spending, live and dry-run). ``day``:
    today's usage of the budget this mode spends (live: the real one; dry-run: its
    in-memory shadow). ``operator_problem``: why the operator state is not known (None
    when it is).
    """
    cfg = settings.config
    live = not cfg.dry_run
    run_budget = run.budget if live else run.dry_budget
    return GateInputs(
        kind=write.kind,
        symbol=write.symbol,
        client_order_id=write.client_order_id,
        notional=write.notional,
        now_ms=now_ms,
        live=live,
        is_leader=is_leader,
        action=cfg.action,
        allow_active_remediation=cfg.allow_active_remediation,
        armed=settings.armed,
        mainnet_trade_allowed=settings.mainnet_trade_allowed,
        cooldown_seconds=cfg.cooldown_seconds,
        cooldown_anchor_ms=run.live_anchor_ms if live else run.dry_anchor_ms,
        whitelist=settings.symbol_whitelist,
        require_whitelist=cfg.require_whitelist,
        client_order_id_prefix=cfg.client_order_id_prefix,
        allowed_strategies=frozenset(cfg.allowed_strategies),
        heartbeat_age_s=heartbeat_age_s,
        max_heartbeat_age_s=cfg.expected_heartbeat_max_age_s,
        max_flatten_notional_usdt=cfg.max_flatten_notional_usdt,
        run_actions=run.actions,
        run_symbols=frozenset(run.symbols),
        max_orders_per_action=cfg.max_orders_per_action,
        max_symbols_per_action=cfg.max_symbols_per_action,
        budget=budget_verdict(cfg, day, run_budget, write.notional or ZERO),
        budget_note="" if live else SHADOW_NOTE,
        operator_problem=operator_problem,
    )
