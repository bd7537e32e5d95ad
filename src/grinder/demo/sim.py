"""The simulator's control API (``/_sim/``): reading its state, and the bodies the cases send."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from grinder.demo.options import QTY, SYMBOL


def position_of(state: Any, symbol: str) -> Decimal:
    amounts = [Decimal(p["positionAmt"]) for p in state["positions"] if p["symbol"] == symbol]
    return sum(amounts, Decimal(0))


def open_ids(state: Any) -> set[str]:
    return {str(o["clientOrderId"]) for o in state["orders"]}


def limit_order(side: str, price: Decimal, cid: str) -> dict[str, Any]:
    return {
        "symbol": SYMBOL,
        "side": side,
        "type": "LIMIT",
        "quantity": str(QTY),
        "price": str(price),
        "timeInForce": "GTC",
        "clientOrderId": cid,
    }


def brief(body: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in body.items()) + "}"
