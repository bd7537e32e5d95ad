"""How long a write may take to reach the exchange: the write fence's window (D44).

Every write -- a remediation's cancel or flatten, a dead-man switch renewal -- is
authorized right before it leaves, and the window it gets becomes its ``recvWindow``:
at most ``WRITE_WINDOW_MS``, never past the local deadline of the HA leadership it is
sent under, and nothing at all with less than ``MIN_WRITE_WINDOW_MS`` of it left.
"""

from __future__ import annotations

WRITE_WINDOW_MS = 2_000
"""The longest a write may take from its authorization to the exchange (its recvWindow)."""
MIN_WRITE_WINDOW_MS = 50
"""A write with less of its leadership left than this is not sent."""


def write_window_ms(lease_left_ms: int | None) -> int | None:
    """The window a write authorized now gets, or None when it must not be sent.

    ``lease_left_ms`` is the time left before the local lease deadline of the leadership
    the write is sent under; None when the instance runs alone (no lease to respect).
    """
    if lease_left_ms is None:
        return WRITE_WINDOW_MS
    if lease_left_ms < MIN_WRITE_WINDOW_MS:
        return None
    return min(WRITE_WINDOW_MS, lease_left_ms)
