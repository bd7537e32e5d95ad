"""REST bodies built from the simulator's state: positions, account, prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from grinder.exchange.simulator.account import Account
from grinder.exchange.simulator.number_text import ZERO, fixed
from grinder.exchange.simulator.positions import Position
from grinder.exchange.simulator.settings import ISOLATED, max_notional


def _symbols(account: Account, symbol: str | None) -> list[str]:
    return [symbol] if symbol is not None else list(account.specs)


def position_risk_v3(account: Account, symbol: str | None) -> list[dict[str, Any]]:
    """Only symbols with a position or open orders, as the real v3 endpoint."""
    rows: list[dict[str, Any]] = []
    for name in _symbols(account, symbol):
        has_orders = bool(account.open_by_symbol[name])
        bid, ask = account.notionals(name) if has_orders else (ZERO, ZERO)
        mark = account.book.mark(name)
        for side in account.position_sides():
            pos = account.positions.get((name, side))
            if (pos is None or pos.amt == 0) and not has_orders:
                continue
            if pos is None:
                pos = Position(spec=account.specs[name], position_side=side)
            rows.append(pos.v3_row(mark, account.settings.leverage_of(name), bid, ask))
    return rows


def position_risk_v2(account: Account, symbol: str | None) -> list[dict[str, Any]]:
    """Every symbol and side, flat ones with ``updateTime`` 0, as the v2 endpoint."""
    rows: list[dict[str, Any]] = []
    for name in _symbols(account, symbol):
        mark = account.book.mark(name)
        for side in account.position_sides():
            pos = account.positions.get((name, side)) or Position(
                spec=account.specs[name], position_side=side
            )
            leverage = account.settings.leverage_of(name)
            isolated = account.settings.margin_type[name] == ISOLATED
            rows.append(
                pos.v2_row(mark, leverage, isolated=isolated, max_notional=max_notional(leverage))
            )
    return rows


def _totals(account: Account) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    unrealized = initial = maint = order_margin = ZERO
    for (name, _side), pos in account.positions.items():
        if pos.amt == 0:
            continue
        mark = account.book.mark(name)
        notional = abs(pos.amt * mark)
        unrealized += pos.unrealized(mark)
        initial += notional / account.settings.leverage_of(name)
        maint += notional * Decimal("0.004")
    for name in account.specs:
        if account.open_by_symbol[name]:
            bid, ask = account.notionals(name)
            order_margin += (bid + ask) / account.settings.leverage_of(name)
    return unrealized, initial, maint, order_margin


def _asset(account: Account, *, v2: bool) -> dict[str, Any]:
    unrealized, initial, maint, order_margin = _totals(account)
    wallet = account.wallet
    available = wallet + unrealized - initial - order_margin
    out: dict[str, Any] = {
        "asset": "USDT",
        "walletBalance": fixed(wallet, 8),
        "unrealizedProfit": fixed(unrealized, 8),
        "marginBalance": fixed(wallet + unrealized, 8),
        "maintMargin": fixed(maint, 8),
        "initialMargin": fixed(initial + order_margin, 8),
        "positionInitialMargin": fixed(initial, 8),
        "openOrderInitialMargin": fixed(order_margin, 8),
    }
    if v2:
        out["maxWithdrawAmount"] = fixed(max(available, ZERO), 8)
    out.update(
        {
            "crossWalletBalance": fixed(wallet, 8),
            "crossUnPnl": fixed(unrealized, 8),
            "availableBalance": fixed(available, 8),
        }
    )
    if v2:
        out["marginAvailable"] = True
    else:
        out["maxWithdrawAmount"] = fixed(max(available, ZERO), 8)
    out["updateTime"] = account.wallet_update_ms
    return out


def _account_totals(account: Account, asset: dict[str, Any]) -> dict[str, Any]:
    return {
        "totalInitialMargin": asset["initialMargin"],
        "totalMaintMargin": asset["maintMargin"],
        "totalWalletBalance": asset["walletBalance"],
        "totalUnrealizedProfit": asset["unrealizedProfit"],
        "totalMarginBalance": asset["marginBalance"],
        "totalPositionInitialMargin": asset["positionInitialMargin"],
        "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
        "totalCrossWalletBalance": asset["crossWalletBalance"],
        "totalCrossUnPnl": asset["crossUnPnl"],
        "availableBalance": asset["availableBalance"],
        "maxWithdrawAmount": asset["maxWithdrawAmount"],
    }


def account_v2(account: Account) -> dict[str, Any]:
    asset = _asset(account, v2=True)
    positions: list[dict[str, Any]] = []
    for name in account.specs:
        mark = account.book.mark(name)
        bid, ask = account.notionals(name) if account.open_by_symbol[name] else (ZERO, ZERO)
        for side in account.position_sides():
            pos = account.positions.get((name, side)) or Position(
                spec=account.specs[name], position_side=side
            )
            leverage = account.settings.leverage_of(name)
            positions.append(pos.account_v2_row(mark, leverage, bid, ask))
    body: dict[str, Any] = {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "tradeGroupId": -1,
        "updateTime": 0,
        "multiAssetsMargin": account.settings.multi_assets,
    }
    body.update(_account_totals(account, asset))
    body["assets"] = [asset]
    body["positions"] = positions
    return body


def account_v3(account: Account) -> dict[str, Any]:
    asset = _asset(account, v2=False)
    body = _account_totals(account, asset)
    body["assets"] = [asset]
    body["positions"] = [
        pos.account_v3_row(account.book.mark(name), account.settings.leverage_of(name))
        for (name, _side), pos in account.positions.items()
        if pos.amt != 0
    ]
    return body


def premium_index(account: Account, symbol: str, now_ms: int) -> dict[str, Any]:
    mark = account.book.mark(symbol)
    interval = account.config.funding_interval_ms or 8 * 60 * 60 * 1000
    rate = fixed(account.config.funding_rate if account.config.funding_interval_ms else ZERO, 8)
    return {
        "symbol": symbol,
        "markPrice": fixed(mark, 8),
        "indexPrice": fixed(mark, 8),
        "estimatedSettlePrice": fixed(mark, 8),
        "lastFundingRate": rate,
        "interestRate": "0.00010000",
        "nextFundingTime": (now_ms // interval + 1) * interval,
        "time": now_ms,
    }


def ticker_price(account: Account, symbol: str, now_ms: int) -> dict[str, Any]:
    spec = account.specs[symbol]
    return {
        "symbol": symbol,
        "price": fixed(account.book.mark(symbol), spec.price_precision),
        "time": now_ms,
    }


def balances(account: Account) -> list[dict[str, Any]]:
    """``GET /fapi/v2/balance`` and ``/fapi/v3/balance``: the one USDT asset."""
    asset = _asset(account, v2=True)
    return [
        {
            "accountAlias": "SgsR",
            "asset": asset["asset"],
            "balance": asset["walletBalance"],
            "crossWalletBalance": asset["crossWalletBalance"],
            "crossUnPnl": asset["crossUnPnl"],
            "availableBalance": asset["availableBalance"],
            "maxWithdrawAmount": asset["maxWithdrawAmount"],
            "marginAvailable": True,
            "updateTime": asset["updateTime"],
        }
    ]


def account_config(account: Account) -> dict[str, Any]:
    """``GET /fapi/v1/accountConfig``."""
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "dualSidePosition": account.dual,
        "updateTime": 0,
        "multiAssetsMargin": account.settings.multi_assets,
        "tradeGroupId": -1,
    }
