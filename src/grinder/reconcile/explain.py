"""Every gate of the remediation chain with its verdict, for operators.

``RemediationExecutor.gate`` stops at the first gate that blocks, which is what
execution needs. Troubleshooting needs the whole chain: which gates pass, which
fail, and which one blocks first. ``explain`` evaluates each gate on its own,
from the same executor state (config, armed, whitelist, gate environment,
leadership, clock) and the same run context ``gate`` reads, and never changes
them. The first failing gate it reports is, by construction and by a
property-based test, the reason ``gate`` returns.

Dry-run evaluates every gate but the arming gates 3-5 (CONTRACT §5); those are
reported ``skipped`` with what they would say once live. Gate 8 (ownership)
applies to cancels only and gate 9 (notional) to flattens only; the other one is
``not_applicable``. Gate E, between them, applies to both: the bot's expected
state is live (a bot heartbeat at most ``expected_heartbeat_max_age_s`` old).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from grinder.reconcile.budget import BudgetTracker, RunBudget, budget_verdict
from grinder.reconcile.config import RemediationAction, mainnet_trade_allowed
from grinder.reconcile.identity import Ownership, ownership
from grinder.reconcile.labels import BlockReason, Mode
from grinder.reconcile.remediation import RemediationExecutor, RunContext
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import ZERO

# How an operator opens each gate on a running service (runbook 12 has the same table).
HOW_TO_OPEN: dict[BlockReason, str] = {
    BlockReason.NOT_LEADER: "only the HA leader remediates: check leadership (docs/HA.md)",
    BlockReason.ACTION_IS_NONE: "grinder control set action cancel_all (or flatten)",
    BlockReason.ACTION_NOT_PERMITTED: "a flatten needs: grinder control set action flatten",
    BlockReason.ALLOW_ACTIVE_REMEDIATION_FALSE: (
        "grinder control set allow_active_remediation true"
    ),
    BlockReason.NOT_ARMED: "grinder control arm",
    BlockReason.ENV_VAR_MISSING: (
        "grinder control allow-mainnet (or ALLOW_MAINNET_TRADE=1 in the service's environment)"
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
    BlockReason.DRY_RUN: "none: dry-run was switched on; grinder control set dry_run false",
    BlockReason.EXPECTED_STATE_UNREADABLE: (
        "the next run goes on once the bot's expected-state store can be read (file or Redis)"
    ),
}


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIPPED = "skipped"
    """Not evaluated in this mode (the arming gates in dry-run)."""
    NOT_APPLICABLE = "not_applicable"
    """Does not apply to this action (ownership for a flatten, notional for a cancel)."""


class Outcome(StrEnum):
    BLOCKED = "blocked"
    PLANNED = "planned"
    """Dry-run: every evaluated gate passes; the action would be planned, not sent."""
    EXECUTE = "execute"
    """Live: every gate passes; the write would be sent."""


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
class Explanation:
    kind: ActionKind
    symbol: str
    mode: Mode
    checks: tuple[GateCheck, ...]

    @property
    def first_block(self) -> BlockReason | None:
        """The reason ``RemediationExecutor.gate`` returns: the first failing gate."""
        for check in self.checks:
            if check.verdict is Verdict.FAIL:
                return check.reason
        return None

    @property
    def first_blocking_check(self) -> GateCheck | None:
        return next((c for c in self.checks if c.verdict is Verdict.FAIL), None)

    @property
    def outcome(self) -> Outcome:
        if self.first_block is not None:
            return Outcome.BLOCKED
        return Outcome.PLANNED if self.mode is Mode.DRY_RUN else Outcome.EXECUTE


def _check(
    gate: str, name: str, ok: bool, detail: str, reason: BlockReason | None = None
) -> GateCheck:
    return GateCheck(
        gate, name, Verdict.PASS if ok else Verdict.FAIL, detail, None if ok else reason
    )


def explain(
    executor: RemediationExecutor,
    kind: ActionKind,
    symbol: str,
    client_order_id: str | None,
    notional: Decimal | None,
    ctx: RunContext,
) -> Explanation:
    """Every gate for this write, evaluated independently (nothing is changed)."""
    cfg = executor.config
    now = executor.clock()
    live = not cfg.dry_run
    checks: list[GateCheck] = []
    add = checks.append

    leader = executor.is_leader()
    add(
        _check(
            "0",
            "HA leader",
            leader,
            "this instance may remediate" if leader else "this instance is not the HA leader",
            BlockReason.NOT_LEADER,
        )
    )

    wanted = (
        RemediationAction.CANCEL_ALL if kind is ActionKind.CANCEL else RemediationAction.FLATTEN
    )
    if cfg.action is RemediationAction.NONE:
        add(_check("1", "action permitted", False, "action=none", BlockReason.ACTION_IS_NONE))
    else:
        add(
            _check(
                "1",
                "action permitted",
                cfg.action.permits(wanted),
                f"action={cfg.action.value} permits {wanted.value}"
                if cfg.action.permits(wanted)
                else f"action={cfg.action.value} does not permit {wanted.value}",
                BlockReason.ACTION_NOT_PERMITTED,
            )
        )

    add(
        GateCheck(
            "2",
            "dry_run",
            Verdict.PASS,
            "dry_run=false: live, gates 3-5 apply"
            if live
            else "dry_run=true: nothing is sent; passing every other gate means PLANNED",
        )
    )

    env = executor.env if executor.env is not None else os.environ
    arming = [
        (
            "3",
            "allow_active_remediation",
            cfg.allow_active_remediation,
            f"allow_active_remediation={str(cfg.allow_active_remediation).lower()}",
            BlockReason.ALLOW_ACTIVE_REMEDIATION_FALSE,
        ),
        (
            "4",
            "executor armed",
            executor.armed,
            f"armed={str(executor.armed).lower()}",
            BlockReason.NOT_ARMED,
        ),
        (
            "5",
            "ALLOW_MAINNET_TRADE=1",
            mainnet_trade_allowed(env),
            "ALLOW_MAINNET_TRADE=1 in the gate environment"
            if mainnet_trade_allowed(env)
            else "ALLOW_MAINNET_TRADE is not 1 in the gate environment",
            BlockReason.ENV_VAR_MISSING,
        ),
    ]
    for gate, name, ok, detail, reason in arming:
        if live:
            add(_check(gate, name, ok, detail, reason))
        else:
            would = "would pass" if ok else f"would block live: {reason.value}"
            add(
                GateCheck(
                    gate,
                    name,
                    Verdict.SKIPPED,
                    f"{detail} (not evaluated in dry-run; {would})",
                    None if ok else reason,
                )
            )

    anchor = ctx.live_anchor_ms if live else ctx.dry_anchor_ms
    cooldown_ms = cfg.cooldown_seconds * 1000
    if anchor is None:
        add(
            _check(
                "6",
                "cooldown",
                True,
                f"no previous remediation; cooldown {cfg.cooldown_seconds:g} s",
            )
        )
    else:
        elapsed = now - anchor
        ok = not elapsed < cooldown_ms
        add(
            _check(
                "6",
                "cooldown",
                ok,
                f"{elapsed / 1000:.1f} s since the last "
                f"{'remediation' if live else 'plan or remediation'}"
                f" (cooldown {cfg.cooldown_seconds:g} s"
                + ("" if ok else f", {max(0.0, (cooldown_ms - elapsed) / 1000):.1f} s left")
                + ")",
                BlockReason.COOLDOWN_NOT_ELAPSED,
            )
        )

    whitelist = executor.symbol_whitelist
    if not whitelist:
        add(
            _check(
                "7",
                "symbol whitelist",
                not cfg.require_whitelist,
                "whitelist empty and require_whitelist=true: everything is blocked"
                if cfg.require_whitelist
                else "whitelist empty and require_whitelist=false: every symbol allowed",
                BlockReason.WHITELIST_REQUIRED,
            )
        )
    else:
        inside = symbol in whitelist
        add(
            _check(
                "7",
                "symbol whitelist",
                inside,
                f"{symbol} {'in' if inside else 'not in'} whitelist {list(whitelist)}",
                BlockReason.SYMBOL_NOT_IN_WHITELIST,
            )
        )

    if kind is ActionKind.CANCEL:
        verdict = ownership(
            client_order_id,
            prefix=cfg.client_order_id_prefix,
            strategy_allowlist=cfg.allowed_strategies,
        )
        allowed = sorted(cfg.allowed_strategies)
        if verdict is Ownership.NO_GRINDER_PREFIX:
            add(
                _check(
                    "8",
                    "order is ours",
                    False,
                    f"{client_order_id!r} does not parse as {cfg.client_order_id_prefix}…",
                    BlockReason.NO_GRINDER_PREFIX,
                )
            )
        elif verdict is Ownership.STRATEGY_NOT_ALLOWED:
            add(
                _check(
                    "8",
                    "order is ours",
                    False,
                    f"{client_order_id} is of a strategy not in {allowed}",
                    BlockReason.STRATEGY_NOT_ALLOWED,
                )
            )
        else:
            add(
                _check(
                    "8", "order is ours", True, f"{client_order_id}: ours (strategies {allowed})"
                )
            )
        add(_expected_check(executor))
        add(GateCheck("9", "flatten notional", Verdict.NOT_APPLICABLE, "cancels have no notional"))
    else:
        add(GateCheck("8", "order is ours", Verdict.NOT_APPLICABLE, "flatten: no order to own"))
        add(_expected_check(executor))
        limit = cfg.max_flatten_notional_usdt
        if notional is None:
            add(
                _check(
                    "9",
                    "flatten notional",
                    False,
                    "no mark price: notional unknown",
                    BlockReason.PRICE_UNAVAILABLE,
                )
            )
        else:
            ok = not notional > limit
            add(
                _check(
                    "9",
                    "flatten notional",
                    ok,
                    f"{notional} USDT {'<=' if ok else '>'} max_flatten_notional_usdt {limit}",
                    BlockReason.NOTIONAL_EXCEEDS_LIMIT,
                )
            )

    if ctx.actions >= cfg.max_orders_per_action:
        add(
            _check(
                "limits",
                "max_orders_per_action",
                False,
                f"{ctx.actions} action(s) this run, "
                f"max_orders_per_action={cfg.max_orders_per_action}",
                BlockReason.MAX_ORDERS_REACHED,
            )
        )
    elif symbol not in ctx.symbols and len(ctx.symbols) >= cfg.max_symbols_per_action:
        add(
            _check(
                "limits",
                "max_symbols_per_action",
                False,
                f"{len(ctx.symbols)} symbol(s) this run, "
                f"max_symbols_per_action={cfg.max_symbols_per_action}",
                BlockReason.MAX_SYMBOLS_REACHED,
            )
        )
    else:
        add(
            _check(
                "limits",
                "per-run limits",
                True,
                f"{ctx.actions} of max_orders_per_action={cfg.max_orders_per_action}, "
                f"{len(ctx.symbols)} of max_symbols_per_action={cfg.max_symbols_per_action}",
            )
        )

    tracker = executor.budget if live else executor.dry_budget()
    run_budget = ctx.budget if live else ctx.dry_budget
    add(_budget_check(tracker, run_budget, notional or ZERO, now, live))
    return Explanation(kind, symbol, executor.mode, tuple(checks))


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


def _expected_check(executor: RemediationExecutor) -> GateCheck:
    """Gate E, as ``RemediationExecutor.gate`` evaluates it (in dry-run too)."""
    source = executor.expected_heartbeat_age
    max_age = executor.config.expected_heartbeat_max_age_s
    if source is None:
        return _check(
            "E",
            "expected state live",
            False,
            "no expected-state source given to the executor: nothing a bot wrote",
            BlockReason.EXPECTED_STATE_STALE,
        )
    age = source()
    return _check(
        "E",
        "expected state live",
        age <= max_age,
        expected_state_detail(age, max_age),
        BlockReason.EXPECTED_STATE_STALE,
    )


def _budget_check(
    tracker: BudgetTracker, run: RunBudget, notional: Decimal, now_ms: int, live: bool
) -> GateCheck:
    """The budget gate as ``BudgetTracker.check`` decides it, without changing the tracker."""
    reason, detail = budget_verdict(tracker.config, tracker.today(now_ms), run, notional)
    which = "" if live else " (dry-run: the in-memory shadow budget)"
    return _check("budget", "budget", reason is None, detail + which, reason)
