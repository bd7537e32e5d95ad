"""Routing: which remediation each mismatch calls for, and the run's plan.

| mismatch                      | action                           | priority |
|-------------------------------|----------------------------------|----------|
| ORDER_EXISTS_UNEXPECTED       | cancel                           | 10       |
| ORDER_STATUS_DIVERGENCE       | cancel if still open on exchange | 20       |
| ORDER_MISSING_ON_EXCHANGE     | none (alert only)                | 90       |
| POSITION_QTY_DIVERGENCE       | none (alert only)                | 95       |
| POSITION_NONZERO_UNEXPECTED   | flatten                          | 100      |

The plan is deterministic: candidates sorted by (priority, symbol, client order
id, position side), and one action type per run -- cancel when any cancel is
routed, else flatten.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from grinder.reconcile.labels import ActionLabel, SkipReason
from grinder.reconcile.types import (
    OPEN_STATUSES,
    ExpectedOrder,
    Mismatch,
    MismatchType,
)


class ActionKind(StrEnum):
    CANCEL = "cancel"
    FLATTEN = "flatten"

    @property
    def label(self) -> ActionLabel:
        return ActionLabel.CANCEL_ALL if self is ActionKind.CANCEL else ActionLabel.FLATTEN


PRIORITY: dict[MismatchType, int] = {
    MismatchType.ORDER_EXISTS_UNEXPECTED: 10,
    MismatchType.ORDER_STATUS_DIVERGENCE: 20,
    MismatchType.ORDER_MISSING_ON_EXCHANGE: 90,
    MismatchType.POSITION_QTY_DIVERGENCE: 95,
    MismatchType.POSITION_NONZERO_UNEXPECTED: 100,
}


@dataclass(frozen=True, slots=True)
class Routed:
    mismatch: Mismatch
    kind: ActionKind
    priority: int


@dataclass(slots=True)
class Plan:
    """The candidates this run will put through the gates, and what it skips."""

    kind: ActionKind | None
    candidates: list[Routed] = field(default_factory=list)
    skipped: list[tuple[Mismatch, SkipReason]] = field(default_factory=list)


def route_one(m: Mismatch) -> ActionKind | SkipReason:
    """The action a single mismatch calls for, or why it calls for none."""
    if m.type is MismatchType.ORDER_EXISTS_UNEXPECTED:
        return ActionKind.CANCEL
    if m.type is MismatchType.ORDER_STATUS_DIVERGENCE:
        if m.observed_status in OPEN_STATUSES:
            return ActionKind.CANCEL
        return SkipReason.OBSERVED_NOT_OPEN
    if m.type is MismatchType.POSITION_NONZERO_UNEXPECTED:
        return ActionKind.FLATTEN
    return SkipReason.ALERT_ONLY


def cancel_still_wanted(expected: ExpectedOrder | None) -> bool:
    """Whether a cancel of an order of ours still holds, given the bot's record of it
    read just now: only while the bot does not hold the order open (no record, or one
    it has ended). Checked right before every attempt leaves."""
    return expected is None or expected.ended_ts_ms is not None


def sort_key(m: Mismatch) -> tuple[int, str, str, str]:
    """(priority, symbol, client order id, position side): the same input, the same plan."""
    return (PRIORITY[m.type], m.symbol, m.client_order_id or "", m.position_side or "")


def plan(mismatches: Iterable[Mismatch]) -> Plan:
    """Route every mismatch and choose the run's single action type."""
    routed: list[Routed] = []
    skipped: list[tuple[Mismatch, SkipReason]] = []
    for m in mismatches:
        verdict = route_one(m)
        if isinstance(verdict, ActionKind):
            routed.append(Routed(m, verdict, PRIORITY[m.type]))
        else:
            skipped.append((m, verdict))
    routed.sort(key=lambda r: sort_key(r.mismatch))
    kind: ActionKind | None = None
    if routed:
        cancel = any(r.kind is ActionKind.CANCEL for r in routed)
        kind = ActionKind.CANCEL if cancel else ActionKind.FLATTEN
        skipped.extend(
            (r.mismatch, SkipReason.OTHER_ACTION_THIS_RUN) for r in routed if r.kind is not kind
        )
    skipped.sort(key=lambda s: sort_key(s[0]))
    return Plan(kind, [r for r in routed if r.kind is kind], skipped)
