"""Instruments: each symbol's filters and precisions, and the exchangeInfo body.

BTCUSDT and ETHUSDT carry the filters of the corpus exchangeInfo capture
(``nautilus_http_futures_usdt_exchange_info.json``); the other symbols carry
realistic values of the same kind. Filter values are kept as the ``Decimal``
text Binance writes (``"0.10"`` stays ``"0.10"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ORDER_TYPES = [
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]
TIME_IN_FORCE = ["GTC", "IOC", "FOK", "GTX", "GTD"]


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One USDⓈ-M perpetual and its trading rules."""

    symbol: str
    base_asset: str
    price_precision: int
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    quantity_precision: int
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    initial_mark: Decimal
    multiplier_down: Decimal = Decimal("0.9000")
    multiplier_up: Decimal = Decimal("1.1000")
    quote_asset: str = "USDT"
    max_num_orders: int = 200
    max_num_algo_orders: int = 10
    onboard_date: int = 1569398400000
    liquidation_fee: str = "0.012500"
    market_take_bound: str = "0.05"

    @property
    def market_step_size(self) -> Decimal:
        return self.step_size

    @property
    def market_min_qty(self) -> Decimal:
        return self.min_qty

    def filters(self) -> list[dict[str, Any]]:
        return [
            {
                "minPrice": _text(self.min_price),
                "maxPrice": _text(self.max_price),
                "filterType": "PRICE_FILTER",
                "tickSize": _text(self.tick_size),
            },
            {
                "stepSize": _text(self.step_size),
                "filterType": "LOT_SIZE",
                "maxQty": _text(self.max_qty),
                "minQty": _text(self.min_qty),
            },
            {
                "stepSize": _text(self.market_step_size),
                "filterType": "MARKET_LOT_SIZE",
                "maxQty": _text(self.market_max_qty),
                "minQty": _text(self.market_min_qty),
            },
            {"limit": self.max_num_orders, "filterType": "MAX_NUM_ORDERS"},
            {"limit": self.max_num_algo_orders, "filterType": "MAX_NUM_ALGO_ORDERS"},
            {"notional": _text(self.min_notional), "filterType": "MIN_NOTIONAL"},
            {
                "multiplierDown": _text(self.multiplier_down),
                "multiplierUp": _text(self.multiplier_up),
                "multiplierDecimal": "4",
                "filterType": "PERCENT_PRICE",
            },
        ]

    def info(self) -> dict[str, Any]:
        """This symbol's entry in ``GET /fapi/v1/exchangeInfo``."""
        return {
            "symbol": self.symbol,
            "pair": self.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": self.onboard_date,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": self.base_asset,
            "quoteAsset": self.quote_asset,
            "marginAsset": self.quote_asset,
            "pricePrecision": self.price_precision,
            "quantityPrecision": self.quantity_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": self.liquidation_fee,
            "marketTakeBound": self.market_take_bound,
            "filters": self.filters(),
            "orderTypes": list(ORDER_TYPES),
            "timeInForce": list(TIME_IN_FORCE),
        }


def _spec(row: tuple[Any, ...]) -> SymbolSpec:
    (sym, base, pp, tick, min_p, max_p, qp, step, max_q, mkt_max_q, notional, mark, down, up) = row
    return SymbolSpec(
        symbol=sym,
        base_asset=base,
        price_precision=pp,
        tick_size=Decimal(tick),
        min_price=Decimal(min_p),
        max_price=Decimal(max_p),
        quantity_precision=qp,
        step_size=Decimal(step),
        min_qty=Decimal(step),
        max_qty=Decimal(max_q),
        market_max_qty=Decimal(mkt_max_q),
        min_notional=Decimal(notional),
        initial_mark=Decimal(mark),
        multiplier_down=Decimal(down),
        multiplier_up=Decimal(up),
    )


# symbol, base, pricePrecision, tick, minPrice, maxPrice, quantityPrecision, step,
# maxQty, market maxQty, min notional, starting mark, PERCENT_PRICE down, up
# fmt: off
_CATALOG_ROWS: list[tuple[Any, ...]] = [
    ("BTCUSDT", "BTC", 2, "0.10", "402", "1246396.60", 3, "0.001", "1000", "1000", "10",
     "65000.00", "0.5454", "1.1000"),
    ("ETHUSDT", "ETH", 2, "0.01", "28.23", "144004.03", 3, "0.001", "10000", "10000", "10",
     "3200.00", "0.9000", "1.1000"),
    ("SOLUSDT", "SOL", 4, "0.0100", "0.4200", "6857", 0, "1", "1000000", "5000", "5",
     "150.0000", "0.9000", "1.1000"),
    ("DOGEUSDT", "DOGE", 6, "0.000010", "0.002440", "30", 0, "1", "50000000", "30000000", "5",
     "0.150000", "0.9000", "1.1000"),
    ("1000PEPEUSDT", "1000PEPE", 7, "0.0000001", "0.0000010", "1", 0, "1", "800000000",
     "200000000", "5", "0.0100000", "0.9000", "1.1000"),
    ("BNBUSDT", "BNB", 3, "0.010", "6.600", "100000", 2, "0.01", "100000", "2000", "5",
     "600.000", "0.9000", "1.1000"),
    ("XRPUSDT", "XRP", 4, "0.0001", "0.0143", "100000", 1, "0.1", "10000000", "2000000", "5",
     "0.6000", "0.9000", "1.1000"),
    ("ADAUSDT", "ADA", 4, "0.0001", "0.0172", "100000", 0, "1", "10000000", "1500000", "5",
     "0.4500", "0.9000", "1.1000"),
    ("AVAXUSDT", "AVAX", 3, "0.001", "0.350", "100000", 0, "1", "1000000", "100000", "5",
     "30.000", "0.9000", "1.1000"),
    ("LINKUSDT", "LINK", 3, "0.001", "0.460", "100000", 2, "0.01", "500000", "50000", "5",
     "15.000", "0.9000", "1.1000"),
    ("DOTUSDT", "DOT", 3, "0.001", "0.360", "100000", 1, "0.1", "1000000", "100000", "5",
     "6.000", "0.9000", "1.1000"),
    ("LTCUSDT", "LTC", 2, "0.01", "3.61", "100000", 3, "0.001", "100000", "10000", "5",
     "80.00", "0.9000", "1.1000"),
    ("TRXUSDT", "TRX", 5, "0.00001", "0.00132", "100000", 0, "1", "10000000", "5000000", "5",
     "0.12000", "0.9000", "1.1000"),
    ("ATOMUSDT", "ATOM", 3, "0.001", "0.205", "100000", 2, "0.01", "1000000", "100000", "5",
     "7.000", "0.9000", "1.1000"),
    ("NEARUSDT", "NEAR", 3, "0.001", "0.107", "100000", 0, "1", "1000000", "200000", "5",
     "5.000", "0.9000", "1.1000"),
    ("APTUSDT", "APT", 4, "0.0001", "0.1000", "100000", 1, "0.1", "1000000", "100000", "5",
     "8.0000", "0.9000", "1.1000"),
    ("ARBUSDT", "ARB", 4, "0.0001", "0.0100", "100000", 1, "0.1", "10000000", "1000000", "5",
     "0.8000", "0.9000", "1.1000"),
    ("OPUSDT", "OP", 4, "0.0001", "0.0100", "100000", 1, "0.1", "10000000", "500000", "5",
     "1.5000", "0.9000", "1.1000"),
    ("SUIUSDT", "SUI", 4, "0.0001", "0.0100", "100000", 1, "0.1", "10000000", "1000000", "5",
     "3.0000", "0.9000", "1.1000"),
    ("BCHUSDT", "BCH", 2, "0.01", "13.93", "100000", 3, "0.001", "10000", "850", "5",
     "400.00", "0.9000", "1.1000"),
]
# fmt: on

CATALOG: dict[str, SymbolSpec] = {row[0]: _spec(row) for row in _CATALOG_ROWS}
DEFAULT_SYMBOLS: tuple[str, ...] = tuple(CATALOG)


def resolve_symbols(symbols: Iterable[str | SymbolSpec] | None) -> dict[str, SymbolSpec]:
    """Specs for ``symbols`` (names from the catalog, or ready specs); all 20 when ``None``."""
    if symbols is None:
        return dict(CATALOG)
    out: dict[str, SymbolSpec] = {}
    for item in symbols:
        if isinstance(item, SymbolSpec):
            out[item.symbol] = item
            continue
        name = item.strip().upper()
        if name not in CATALOG:
            known = ", ".join(CATALOG)
            raise ValueError(f"unknown simulator symbol {item!r}; known: {known}")
        out[name] = CATALOG[name]
    if not out:
        raise ValueError("the simulator needs at least one symbol")
    return out


def rate_limits(
    weight_limit: int, orders_per_minute: int, orders_per_10s: int
) -> list[dict[str, Any]]:
    return [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": weight_limit,
        },
        {
            "rateLimitType": "ORDERS",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": orders_per_minute,
        },
        {
            "rateLimitType": "ORDERS",
            "interval": "SECOND",
            "intervalNum": 10,
            "limit": orders_per_10s,
        },
    ]


def exchange_info(
    specs: Sequence[SymbolSpec],
    server_time: int,
    limits: list[dict[str, Any]],
) -> dict[str, Any]:
    """The body of ``GET /fapi/v1/exchangeInfo``."""
    return {
        "timezone": "UTC",
        "serverTime": server_time,
        "futuresType": "U_MARGINED",
        "rateLimits": limits,
        "exchangeFilters": [],
        "assets": [
            {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
            {"asset": "BTC", "marginAvailable": True, "autoAssetExchange": "-0.10000000"},
            {"asset": "BNB", "marginAvailable": True, "autoAssetExchange": "-10"},
            {"asset": "ETH", "marginAvailable": True, "autoAssetExchange": "-5"},
            {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
        ],
        "symbols": [spec.info() for spec in specs],
    }


def _text(value: Decimal) -> str:
    """A filter value as Binance writes it: plain notation, trailing zeros kept ("0.10")."""
    return format(value, "f")
