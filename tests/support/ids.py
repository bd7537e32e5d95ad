"""Client order ids the service counts as its own."""

from __future__ import annotations

from grinder.reconcile.identity import generate_client_order_id


def ours(seq: int, symbol: str = "BTCUSDT") -> str:
    """The ``seq``-th order id of strategy ``d`` on ``symbol`` (level 1, a fixed timestamp)."""
    return generate_client_order_id(
        strategy_id="d", symbol=symbol, level_id=1, ts_seconds=1_800_000_000, seq=seq
    )
