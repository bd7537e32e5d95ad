"""The gate chain, once: every gate's id, name, when it applies, its check, its words.

A remediation write passes the gates in the order of ``GATES``; the first that
fails is its block reason (``first_block``, what the executor acts on), and every
one that fails is what an operator must open (``every_block``, what the reports
name). The
explainer shows every gate with its verdict (``evaluate``, what ``grinder gates``
and the ceremony print). Both read the same table over the same ``GateInputs``:
a frozen snapshot of everything the chain depends on, taken by the executor
(``RemediationExecutor.gate_inputs``). The functions here are pure: no clock, no
environment, no I/O. Adding a gate is one entry in ``GATES`` (and its block
reason in ``labels.BlockReason`` and ``HOW_TO_OPEN``).

Dry-run evaluates every gate but the arming gates 3-5 (CONTRACT §5), reported
``skipped`` with what they would say once live. Gate 8 (ownership) applies to
cancels only and gate 9 (notional) to flattens only. Gate E, between them,
applies to both: the bot's expected state is live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from grinder.reconcile.config import RemediationAction
from grinder.reconcile.identity import Ownership, ownership
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind

# How an operator opens each gate on a running service (runbook 12 has the same table).
HOW_TO_OPEN: dict[BlockReason, str] = {
    BlockReason.NOT_LEADER: "only the HA leader remediates: check leadership (docs/HA.md)",
    BlockReason.ACTION_IS_NONE: (
        "grinder control set action cancel_all (or flatten); "
        "if the rollback action-none stands: grinder control lift action-none"
    ),
    BlockReason.ACTION_NOT_PERMITTED: "a flatten needs: grinder control set action flatten",
    BlockReason.ALLOW_ACTIVE_REMEDIATION_FALSE: (
        "grinder control set allow_active_remediation true"
    ),
    BlockReason.NOT_ARMED: (
        "grinder control arm; if the rollback disarm stands: grinder control lift disarm"
    ),
    BlockReason.ENV_VAR_MISSING: (
        "grinder control allow-mainnet (or ALLOW_MAINNET_TRADE=1 in the service's environment "
        "at its start); if the rollback deny-mainnet stands: grinder control lift deny-mainnet"
    ),
    BlockReason.COOLDOWN_NOT_ELAPSED: "wait until cooldown_seconds have passed since the last one",
    BlockReason.SYMBOL_NOT_IN_WHITELIST: "grinder control set symbol_whitelist SYMBOL[,SYMBOL...]",
    BlockReason.WHITELIST_REQUIRED: "grinder control set symbol_whitelist SYMBOL[,SYMBOL...]",
    BlockReason.NO_GRINDER_PREFIX: "none: an order that is not ours is never cancelled",
    BlockReason.STRATEGY_NOT_ALLOWED: (
        "grinder control set strategy_allowlist d,OTHER (only if that strategy is yours)"
    ),
    BlockReason.EXPECTED_STATE_STALE: (
        "run the bot: it must write the expected state the service reads and call heartbeat() "
        "at least every expected_heartbeat_max_age_s (docs/EXPECTED_STATE.md)"
    ),
    BlockReason.NOTIONAL_EXCEEDS_LIMIT: (
        "grinder control set max_flatten_notional_usdt N, or flatten by hand"
    ),
    BlockReason.PRICE_UNAVAILABLE: "none until the exchange gives a mark price (connectivity?)",
    BlockReason.MAX_ORDERS_REACHED: (
        "the next run goes on; grinder control set max_orders_per_action N"
    ),
    BlockReason.MAX_SYMBOLS_REACHED: (
        "the next run goes on; grinder control set max_symbols_per_action N"
    ),
    BlockReason.MAX_CALLS_PER_RUN: "the next run goes on; grinder control set max_calls_per_run N",
    BlockReason.MAX_NOTIONAL_PER_RUN: (
        "the next run goes on; grinder control set max_notional_per_run N"
    ),
    BlockReason.MAX_CALLS_PER_DAY: "00:00 UTC resets it; grinder control set max_calls_per_day N",
    BlockReason.MAX_NOTIONAL_PER_DAY: (
        "00:00 UTC resets it; grinder control set max_notional_per_day N"
    ),
    BlockReason.DRY_RUN: (
        "none: dry-run was switched on; grinder control set dry_run false "
        "(if the rollback dry-run stands: grinder control lift dry-run)"
    ),
    BlockReason.EXPECTED_STATE_UNREADABLE: (
        "the next run goes on once the bot's expected-state store can be read (file or Redis)"
    ),
    BlockReason.OPERATOR_STATE_UNKNOWN: (
        "grinder control status (operator): fix the operator state file, bring Redis back, "
        "or re-assert a lost one (the rollbacks that should stand, or grinder control lift)"
    ),
}


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    """Not evaluated in this mode (the arming gates in dry-run)."""
    NOT_APPLICABLE = "not_applicable"
    """Does not apply to this action (ownership for a flatten, notional for a cancel)."""


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One gate: its id (``0``…``9``, ``E``, ``limits``, ``budget``), what it checks, verdict."""

    gate: str
    name: str
    verdict: Verdict
    detail: str
    reason: BlockReason | None = None
    """The block reason when the verdict is FAIL (or would be, for a SKIPPED gate)."""


@dataclass(frozen=True, slots=True)
class GateInputs:
    """Everything the gate chain reads about one write, read once."""

    kind: ActionKind
    symbol: str
    client_order_id: str | None
    notional: Decimal | None
    """A flatten's notional; None without a mark price (or before it is read)."""
    now_ms: int
    live: bool
    is_leader: bool
    action: RemediationAction
    allow_active_remediation: bool
    armed: bool
    mainnet_trade_allowed: bool
    cooldown_seconds: float
    cooldown_anchor_ms: int | None
    """The last write (live) or the last plan or write (dry-run) this run starts from."""
    whitelist: tuple[str, ...]
    require_whitelist: bool
    client_order_id_prefix: str
    allowed_strategies: frozenset[str]
    heartbeat_age_s: float | None
    """Seconds since a bot last wrote the expected state (``inf``: never); None when the
    executor was given no expected-state source at all."""
    max_heartbeat_age_s: float
    max_flatten_notional_usdt: Decimal
    run_actions: int
    run_symbols: frozenset[str]
    max_orders_per_action: int
    max_symbols_per_action: int
    budget: tuple[BlockReason | None, str]
    """The budget gate's verdict and its figures (``budget.budget_verdict``)."""
    budget_note: str = ""
    """Said after the budget's figures (dry-run: which budget it is)."""
    operator_problem: str | None = None
    """Why the operator state (the standing rollbacks) is not known; None when it is."""


@dataclass(frozen=True, slots=True)
class Gate:
    """One entry of the chain: ``check`` gives the block reason (None: passes) and the
    words the explainer shows; ``applies`` says whether it is evaluated for these inputs."""

    id: str
    name: str
    check: Callable[[GateInputs], tuple[BlockReason | None, str]]
    applies: Callable[[GateInputs], Verdict | None] = lambda _i: None
    """None when the gate is evaluated; else the verdict it shows instead (``skipped``,
    ``not_applicable``) with ``check`` run only for its words."""


def _leader(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.is_leader:
        return None, "this instance may remediate"
    return BlockReason.NOT_LEADER, "this instance is not the HA leader"


def _operator(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.operator_problem is None:
        return None, "the operator state (standing rollbacks) is known"
    return BlockReason.OPERATOR_STATE_UNKNOWN, i.operator_problem


def _wanted(i: GateInputs) -> RemediationAction:
    return (
        RemediationAction.CANCEL_ALL if i.kind is ActionKind.CANCEL else RemediationAction.FLATTEN
    )


def _action(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.action is RemediationAction.NONE:
        return BlockReason.ACTION_IS_NONE, "action=none"
    wanted = _wanted(i)
    if i.action.permits(wanted):
        return None, f"action={i.action.value} permits {wanted.value}"
    return BlockReason.ACTION_NOT_PERMITTED, (
        f"action={i.action.value} does not permit {wanted.value}"
    )


def _dry_run(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.live:
        return None, "dry_run=false: live, gates 3-5 apply"
    return None, "dry_run=true: nothing is sent; passing every other gate means PLANNED"


def _allow_active(i: GateInputs) -> tuple[BlockReason | None, str]:
    detail = f"allow_active_remediation={str(i.allow_active_remediation).lower()}"
    ok = i.allow_active_remediation
    return (None if ok else BlockReason.ALLOW_ACTIVE_REMEDIATION_FALSE), detail


def _armed(i: GateInputs) -> tuple[BlockReason | None, str]:
    return (None if i.armed else BlockReason.NOT_ARMED), f"armed={str(i.armed).lower()}"


def _mainnet(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.mainnet_trade_allowed:
        return None, "ALLOW_MAINNET_TRADE=1 in the gate environment"
    return BlockReason.ENV_VAR_MISSING, "ALLOW_MAINNET_TRADE is not 1 in the gate environment"


def _arming(i: GateInputs) -> Verdict | None:
    return None if i.live else Verdict.SKIPPED


def _cooldown(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.cooldown_anchor_ms is None:
        return None, f"no previous remediation; cooldown {i.cooldown_seconds:g} s"
    cooldown_ms = i.cooldown_seconds * 1000
    elapsed = i.now_ms - i.cooldown_anchor_ms
    ok = not elapsed < cooldown_ms
    detail = (
        f"{elapsed / 1000:.1f} s since the last "
        f"{'remediation' if i.live else 'plan or remediation'}"
        f" (cooldown {i.cooldown_seconds:g} s"
        + ("" if ok else f", {max(0.0, (cooldown_ms - elapsed) / 1000):.1f} s left")
        + ")"
    )
    return (None if ok else BlockReason.COOLDOWN_NOT_ELAPSED), detail


def _whitelist(i: GateInputs) -> tuple[BlockReason | None, str]:
    if not i.whitelist:
        if i.require_whitelist:
            return BlockReason.WHITELIST_REQUIRED, (
                "whitelist empty and require_whitelist=true: everything is blocked"
            )
        return None, "whitelist empty and require_whitelist=false: every symbol allowed"
    inside = i.symbol in i.whitelist
    detail = f"{i.symbol} {'in' if inside else 'not in'} whitelist {list(i.whitelist)}"
    return (None if inside else BlockReason.SYMBOL_NOT_IN_WHITELIST), detail


def _ownership(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.kind is not ActionKind.CANCEL:
        return None, "flatten: no order to own"
    verdict = ownership(
        i.client_order_id, prefix=i.client_order_id_prefix, strategy_allowlist=i.allowed_strategies
    )
    allowed = sorted(i.allowed_strategies)
    if verdict is Ownership.NO_GRINDER_PREFIX:
        return BlockReason.NO_GRINDER_PREFIX, (
            f"{i.client_order_id!r} does not parse as {i.client_order_id_prefix}…"
        )
    if verdict is Ownership.STRATEGY_NOT_ALLOWED:
        return BlockReason.STRATEGY_NOT_ALLOWED, (
            f"{i.client_order_id} is of a strategy not in {allowed}"
        )
    return None, f"{i.client_order_id}: ours (strategies {allowed})"


def _cancels_only(i: GateInputs) -> Verdict | None:
    return None if i.kind is ActionKind.CANCEL else Verdict.NOT_APPLICABLE


def expected_state_detail(age_s: float, max_age_s: float) -> str:
    """Gate E in words: how old the bot's last write to the expected state is."""
    limit = f"expected_heartbeat_max_age_s {max_age_s:g} s"
    if math.isnan(age_s):
        return f"bot heartbeat age unknown: treated as stale ({limit})"
    if math.isinf(age_s):
        return (
            "never written by a bot: no bot heartbeat in the expected state, so every order "
            "and position would look unexpected"
        )
    ok = age_s <= max_age_s
    return f"bot heartbeat {age_s:.1f} s ago {'<=' if ok else '>'} {limit}" + (
        "" if ok else ": the bot stopped writing, its state is not trusted"
    )


def _expected_live(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.heartbeat_age_s is None:
        return BlockReason.EXPECTED_STATE_STALE, (
            "no expected-state source given to the executor: nothing a bot wrote"
        )
    age = i.heartbeat_age_s
    ok = age <= i.max_heartbeat_age_s  # never written (inf), stale, or NaN: blocked
    detail = expected_state_detail(age, i.max_heartbeat_age_s)
    return (None if ok else BlockReason.EXPECTED_STATE_STALE), detail


def _notional(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.kind is not ActionKind.FLATTEN:
        return None, "cancels have no notional"
    if i.notional is None:
        return BlockReason.PRICE_UNAVAILABLE, "no mark price: notional unknown"
    limit = i.max_flatten_notional_usdt
    ok = not i.notional > limit
    detail = f"{i.notional} USDT {'<=' if ok else '>'} max_flatten_notional_usdt {limit}"
    return (None if ok else BlockReason.NOTIONAL_EXCEEDS_LIMIT), detail


def _flattens_only(i: GateInputs) -> Verdict | None:
    return None if i.kind is ActionKind.FLATTEN else Verdict.NOT_APPLICABLE


def _run_limits(i: GateInputs) -> tuple[BlockReason | None, str]:
    if i.run_actions >= i.max_orders_per_action:
        return BlockReason.MAX_ORDERS_REACHED, (
            f"{i.run_actions} action(s) this run, max_orders_per_action={i.max_orders_per_action}"
        )
    if i.symbol not in i.run_symbols and len(i.run_symbols) >= i.max_symbols_per_action:
        return BlockReason.MAX_SYMBOLS_REACHED, (
            f"{len(i.run_symbols)} symbol(s) this run, "
            f"max_symbols_per_action={i.max_symbols_per_action}"
        )
    return None, (
        f"{i.run_actions} of max_orders_per_action={i.max_orders_per_action}, "
        f"{len(i.run_symbols)} of max_symbols_per_action={i.max_symbols_per_action}"
    )


def _budget(i: GateInputs) -> tuple[BlockReason | None, str]:
    reason, detail = i.budget
    return reason, detail + i.budget_note


GATES: tuple[Gate, ...] = (
    Gate("0", "HA leader", _leader),
    Gate("O", "operator state known", _operator),
    Gate("1", "action permitted", _action),
    Gate("2", "dry_run", _dry_run),
    Gate("3", "allow_active_remediation", _allow_active, _arming),
    Gate("4", "executor armed", _armed, _arming),
    Gate("5", "ALLOW_MAINNET_TRADE=1", _mainnet, _arming),
    Gate("6", "cooldown", _cooldown),
    Gate("7", "symbol whitelist", _whitelist),
    Gate("8", "order is ours", _ownership, _cancels_only),
    Gate("E", "expected state live", _expected_live),
    Gate("9", "flatten notional", _notional, _flattens_only),
    Gate("limits", "per-run limits", _run_limits),
    Gate("budget", "budget", _budget),
)
"""The chain, in order. ``first_block(through_ownership_only=True)`` stops after gate E:
what can be judged before a flatten's position and mark price are read."""

_THROUGH_OWNERSHIP = next(n for n, g in enumerate(GATES) if g.id == "E") + 1

_LIMIT_NAMES = {
    BlockReason.MAX_ORDERS_REACHED: "max_orders_per_action",
    BlockReason.MAX_SYMBOLS_REACHED: "max_symbols_per_action",
}


def _blocks(i: GateInputs, through_ownership_only: bool) -> Iterator[BlockReason]:
    chain = GATES[:_THROUGH_OWNERSHIP] if through_ownership_only else GATES
    for gate in chain:
        if gate.applies(i) is not None:
            continue
        reason, _detail = gate.check(i)
        if reason is not None:
            yield reason


def first_block(i: GateInputs, *, through_ownership_only: bool = False) -> BlockReason | None:
    """The first gate that blocks this write, or None when every gate passes."""
    return next(_blocks(i, through_ownership_only), None)


def every_block(i: GateInputs, *, through_ownership_only: bool = False) -> tuple[BlockReason, ...]:
    """Every gate that blocks this write, in the chain's order (empty when all pass): what an
    operator must open. The first is ``first_block``, the block reason of the metrics."""
    return tuple(_blocks(i, through_ownership_only))


def evaluate(i: GateInputs) -> tuple[GateCheck, ...]:
    """Every gate with its verdict, each evaluated on its own (for the explainer)."""
    checks: list[GateCheck] = []
    for gate in GATES:
        reason, detail = gate.check(i)
        shown = gate.applies(i)
        if shown is Verdict.NOT_APPLICABLE:
            checks.append(GateCheck(gate.id, gate.name, shown, detail))
        elif shown is Verdict.SKIPPED:
            would = "would pass" if reason is None else f"would block live: {reason.value}"
            detail = f"{detail} (not evaluated in dry-run; {would})"
            checks.append(GateCheck(gate.id, gate.name, shown, detail, reason))
        else:
            name = _LIMIT_NAMES.get(reason, gate.name) if reason is not None else gate.name
            verdict = Verdict.PASS if reason is None else Verdict.FAIL
            checks.append(GateCheck(gate.id, name, verdict, detail, reason))
    return tuple(checks)
