"""Whether the dead-man switch renews a symbol's countdown now: a pure decision.

A renewal is *due* when this instance has not had one accepted under its current
leadership (a new leader renews at once), when the renewal interval has passed since
the last accepted one, or when half an interval has passed since a failed attempt.
A due renewal is sent only when nothing withholds it; the reasons are checked in
order and the first one is reported:

1. ``not_acting`` -- under HA, this instance is not the acting leader;
2. ``lease_ending`` -- its leadership has less than the write fence's minimum left;
3. ``expected_state_stale`` -- the bot's recorder heartbeat is older than gate E's
   limit: the bot stopped recording, so its orders are left to the exchange's
   countdown;
4. ``stream_not_live`` -- the user-data stream is not connected;
5. ``snapshot_stale`` -- the last REST snapshot is older than ``max_snapshot_age_s``.

The same check runs again right before the request leaves (``withhold_reason``), so
a leadership lost between the decision and the send withholds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from grinder.reconcile.write_window import write_window_ms


class Withhold(StrEnum):
    """Why a due renewal was not sent (a metric label and a log field)."""

    NOT_ACTING = "not_acting"
    LEASE_ENDING = "lease_ending"
    EXPECTED_STATE_STALE = "expected_state_stale"
    STREAM_NOT_LIVE = "stream_not_live"
    SNAPSHOT_STALE = "snapshot_stale"


@dataclass(frozen=True, slots=True)
class Health:
    """What the deployment looks like to this instance now."""

    acting: bool
    """Alone: always. Under HA: this instance holds the lease and acts under it."""
    lease_left_ms: int | None
    """Time left before the local lease deadline; None when running alone."""
    heartbeat_age_s: float
    heartbeat_max_age_s: float
    stream_live: bool
    snapshot_age_ms: int | None
    max_snapshot_age_ms: int


@dataclass(frozen=True, slots=True)
class SymbolRenewals:
    """What this instance knows of its own renewals of one symbol."""

    accepted_ms: int | None = None
    """When the exchange last accepted a renewal sent under the current leadership."""
    failed_ms: int | None = None
    """When the last attempt failed (its outcome unknown or refused), if it was the last."""


def withhold_reason(health: Health) -> Withhold | None:
    """The first reason a renewal must not be sent now, or None."""
    if not health.acting:
        return Withhold.NOT_ACTING
    if write_window_ms(health.lease_left_ms) is None:
        return Withhold.LEASE_ENDING
    if not health.heartbeat_age_s <= health.heartbeat_max_age_s:
        return Withhold.EXPECTED_STATE_STALE
    if not health.stream_live:
        return Withhold.STREAM_NOT_LIVE
    age = health.snapshot_age_ms
    if age is None or age > health.max_snapshot_age_ms:
        return Withhold.SNAPSHOT_STALE
    return None


def next_due_ms(renewals: SymbolRenewals, renew_interval_ms: int) -> int | None:
    """When the next renewal of a symbol is due; None: due now (never renewed here)."""
    if renewals.failed_ms is not None:
        return renewals.failed_ms + renew_interval_ms // 2
    if renewals.accepted_ms is None:
        return None
    return renewals.accepted_ms + renew_interval_ms


def is_due(renewals: SymbolRenewals, renew_interval_ms: int, now_ms: int) -> bool:
    due = next_due_ms(renewals, renew_interval_ms)
    return due is None or now_ms >= due


def countdown_left_ms(renewals: SymbolRenewals, countdown_ms: int, now_ms: int) -> int | None:
    """How long the exchange's countdown has left by this instance's last accepted renewal
    (None when it has none): the countdown ran from when that request was sent."""
    if renewals.accepted_ms is None:
        return None
    return max(0, renewals.accepted_ms + countdown_ms - now_ms)
