"""Stable values that reach metric labels, log lines and audit records.

They are part of the product contract: dashboards and alerts select on them, so
a value here is never renamed.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """Whether remediation writes (``live``) or only plans (``dry_run``): the ``mode`` of
    every run, result, log line and audit record."""

    DRY_RUN = "dry_run"
    LIVE = "live"


class ActionLabel(StrEnum):
    """The ``action`` label of the remediation metrics."""

    CANCEL_ALL = "cancel_all"
    FLATTEN = "flatten"


class BlockReason(StrEnum):
    """Why a remediation write did not happen: the first gate that failed."""

    NOT_LEADER = "not_leader"
    ACTION_IS_NONE = "action_is_none"
    ACTION_NOT_PERMITTED = "action_not_permitted"
    ALLOW_ACTIVE_REMEDIATION_FALSE = "allow_active_remediation_false"
    NOT_ARMED = "not_armed"
    ENV_VAR_MISSING = "env_var_missing"
    COOLDOWN_NOT_ELAPSED = "cooldown_not_elapsed"
    SYMBOL_NOT_IN_WHITELIST = "symbol_not_in_whitelist"
    WHITELIST_REQUIRED = "whitelist_required"
    NO_GRINDER_PREFIX = "no_grinder_prefix"
    STRATEGY_NOT_ALLOWED = "strategy_not_allowed"
    EXPECTED_STATE_STALE = "expected_state_stale"
    NOTIONAL_EXCEEDS_LIMIT = "notional_exceeds_limit"
    PRICE_UNAVAILABLE = "price_unavailable"
    MAX_ORDERS_REACHED = "max_orders_reached"
    MAX_SYMBOLS_REACHED = "max_symbols_reached"
    MAX_CALLS_PER_RUN = "max_calls_per_run"
    MAX_NOTIONAL_PER_RUN = "max_notional_per_run"
    MAX_CALLS_PER_DAY = "max_calls_per_day"
    MAX_NOTIONAL_PER_DAY = "max_notional_per_day"
    DRY_RUN = "dry_run"
    """Found at the wire: dry-run was switched on after the gates passed."""
    EXPECTED_STATE_UNREADABLE = "expected_state_unreadable"
    """Found at the wire: the bot's expected state could not be read to confirm a cancel."""
    OPERATOR_STATE_UNKNOWN = "operator_state_unknown"
    """Gate O: the operator's standing words (rollbacks) cannot be read, or were lost."""


WIRE_ONLY_BLOCK_REASONS = frozenset({BlockReason.DRY_RUN, BlockReason.EXPECTED_STATE_UNREADABLE})
"""Block reasons found only when a write is authorized at the wire, never by the gate chain."""


class ResultStatus(StrEnum):
    """Outcome of one remediation candidate (audit ``status``)."""

    PLANNED = "PLANNED"
    EXECUTED = "EXECUTED"
    BLOCKED = "BLOCKED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class FailReason(StrEnum):
    """Why a remediation that passed every gate did not complete."""

    PORT_ERROR = "port_error"
    BUDGET_STATE_ERROR = "budget_state_error"
    CLIENT_ORDER_ID_ERROR = "client_order_id_error"


class SkipReason(StrEnum):
    """Why a mismatch got no remediation attempt at all this run."""

    ALERT_ONLY = "alert_only"
    OBSERVED_NOT_OPEN = "observed_not_open"
    OTHER_ACTION_THIS_RUN = "other_action_this_run"
    ALREADY_RESOLVED = "already_resolved"
    ALREADY_PLANNED = "already_planned"
    NOW_EXPECTED = "now_expected"
    """Found at the wire: the bot records the order as open again; it is not cancelled."""


class AttemptOutcome(StrEnum):
    """What became of one attempt to send a remediation write (the ``outcome`` label)."""

    ACCEPTED = "accepted"
    """The exchange executed it."""
    REJECTED = "rejected"
    """The exchange answered with an error; it was not executed."""
    UNKNOWN = "unknown"
    """Sent, and whether it was executed is unknown (a timeout, a 503 "unknown error")."""
    WITHHELD = "withheld"
    """Not sent: its authorization at the wire failed (lease, gates, or the decision)."""


class TriageOutcome(StrEnum):
    """Outcome of looking up one missing order by client order id."""

    FOUND_FILLED = "found_filled"
    FOUND_ENDED = "found_ended"
    FOUND_OPEN = "found_open"
    NOT_FOUND = "not_found"
    ERROR = "error"
    DEFERRED = "deferred"


class Event(StrEnum):
    """Log and audit event names."""

    RECONCILE_RUN = "RECONCILE_RUN"
    RECONCILE_MISMATCH = "RECONCILE_MISMATCH"
    RECONCILE_MISMATCH_CLEARED = "RECONCILE_MISMATCH_CLEARED"
    RECONCILE_TRIAGE = "RECONCILE_TRIAGE"
    REMEDIATION_PLANNED = "REMEDIATION_PLANNED"
    REMEDIATION_EXECUTED = "REMEDIATION_EXECUTED"
    REMEDIATION_BLOCKED = "REMEDIATION_BLOCKED"
    REMEDIATION_FAILED = "REMEDIATION_FAILED"
    REMEDIATE_SKIP = "REMEDIATE_SKIP"
    REMEDIATE_ATTEMPT = "REMEDIATE_ATTEMPT"
    REMEDIATE_RESULT = "REMEDIATE_RESULT"
    AUDIT_WRITE_FAILED = "AUDIT_WRITE_FAILED"
    INCIDENT_OPENED = "INCIDENT_OPENED"
    INCIDENT_CLEARED = "INCIDENT_CLEARED"
    INCIDENT_ACKNOWLEDGED = "INCIDENT_ACKNOWLEDGED"


class IncidentCause(StrEnum):
    """Why an incident happened, as the evidence decided it (``grinder.incidents.causes``);
    the ``cause`` label of the incident gauges and the ``cause`` of every incident record."""

    LIQUIDATION = "liquidation"
    """The exchange liquidated the position (``autoclose-…`` fills, expiry reason 5)."""
    ADL = "adl"
    """Auto-deleveraging closed part of the position (``adl_autoclose`` fills)."""
    SETTLEMENT = "settlement"
    """A delisting or delivery settlement (``settlement_autoclose-…``, expiry reason 7)."""
    SELF_TRADE_PREVENTION = "self_trade_prevention"
    """The order expired in matching to avoid a self-trade (``EXPIRED_IN_MATCH``, 1 / 3)."""
    GTE_POSITION_CLOSED = "gte_position_closed"
    """A GTE_GTC order expired because its position closed (expiry reason 6)."""
    MANUAL = "manual"
    """An order made by hand in the exchange's own apps (``web_``, ``ios_``, … ids)."""
    OTHER_STRATEGY = "other_strategy"
    """An order of another strategy or bot: an id that is not ours."""
    MISSED_STREAM_EVENT = "missed_stream_event"
    """A lookup found the order's end, which no stream event had brought."""
    STREAM_GAP = "stream_gap"
    """The order's end fell in a window when the user-data stream was reconnecting."""
    BOT_STOPPED = "bot_stopped"
    """The bot had stopped recording: its heartbeat was stale (gate E's input)."""
    TRIGGER_REJECTED = "trigger_rejected"
    """A conditional order's trigger was rejected (``CONDITIONAL_ORDER_TRIGGER_REJECT``)."""
    REMEDIATION_ORDER = "remediation_order"
    """An order remediation itself placed (level ``R`` of our ids)."""
    UNKNOWN = "unknown"
    """No evidence decided it."""
