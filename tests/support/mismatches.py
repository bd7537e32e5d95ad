"""Mismatches the tests of incidents share: an orphan order of ours, an unexpected position."""

from __future__ import annotations

from decimal import Decimal

from grinder.reconcile.types import Mismatch, MismatchType, PositionSide
from tests.support.ids import ours

ORPHAN = Mismatch(
    type=MismatchType.ORDER_EXISTS_UNEXPECTED,
    symbol="BTCUSDT",
    client_order_id=ours(1),
    observed_status="NEW",
    observed_qty=Decimal("0.002"),
)
UNEXPECTED_POSITION = Mismatch(
    type=MismatchType.POSITION_NONZERO_UNEXPECTED,
    symbol="ETHUSDT",
    position_side=PositionSide.BOTH,
    expected_qty=Decimal(0),
    observed_qty=Decimal("0.05"),
)
