"""The Binance USDⓈ-M error codes this client knows, each with its class.

Data only: one row per code (Binance's symbolic name, the ``errors`` class it maps to,
and an operator-facing summary). ``error_from_response`` looks a code up here; a code
not listed is classified by its HTTP status instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from grinder.exchange.binance.errors import (
    AlgoEndpointRequired,
    AuthError,
    BinanceError,
    DuplicateClientOrderId,
    FilterRejected,
    InsufficientMargin,
    InvalidClientOrderId,
    InvalidRequest,
    ListenKeyInvalid,
    MinNotionalRejected,
    NoChangeNeeded,
    OrderAlreadyGone,
    OrderNotFound,
    OrderRejected,
    PositionInsufficient,
    PositionSideMismatch,
    RateLimited,
    ReduceOnlyRejected,
    ServerError,
    ServerOverloaded,
    TimestampError,
    UnknownOutcome,
)

__all__ = ["ERROR_SPECS", "ErrorSpec"]


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """What one Binance error code means: its class and an operator-facing summary."""

    code: int
    name: str
    cls: type[BinanceError]
    summary: str


def _specs(*rows: tuple[int, str, type[BinanceError], str]) -> dict[int, ErrorSpec]:
    return {code: ErrorSpec(code, name, cls, summary) for code, name, cls, summary in rows}


ERROR_SPECS: Mapping[int, ErrorSpec] = _specs(
    # 10xx: server and network
    (-1000, "UNKNOWN", UnknownOutcome, "unknown error while processing; outcome unknown"),
    (-1001, "DISCONNECTED", ServerError, "Binance internal error; request not processed"),
    (-1002, "UNAUTHORIZED", AuthError, "not authorized to execute this request"),
    (
        -1003,
        "TOO_MANY_REQUESTS",
        RateLimited,
        "IP request-weight limit exceeded; back off (continuing leads to an IP ban)",
    ),
    (
        -1006,
        "UNEXPECTED_RESP",
        UnknownOutcome,
        "unexpected response from Binance's message bus; execution status unknown",
    ),
    (
        -1007,
        "TIMEOUT",
        UnknownOutcome,
        "Binance backend timed out; execution status unknown, reconcile before resending",
    ),
    (-1008, "Request Throttled", ServerOverloaded, "Binance is overloaded; request rejected"),
    (-1015, "TOO_MANY_ORDERS", RateLimited, "account order-rate limit exceeded"),
    (-1016, "SERVICE_SHUTTING_DOWN", ServerError, "Binance service unavailable"),
    (
        -1021,
        "INVALID_TIMESTAMP",
        TimestampError,
        "request timestamp outside recvWindow: local clock is off from Binance server "
        "time; resync with GET /fapi/v1/time",
    ),
    (
        -1022,
        "INVALID_SIGNATURE",
        AuthError,
        "request signature is not valid (wrong API secret or parameter encoding)",
    ),
    (
        -1023,
        "START_TIME_GREATER_THAN_END_TIME",
        InvalidRequest,
        "startTime is after endTime",
    ),
    # 11xx: request issues
    (-1100, "ILLEGAL_CHARS", InvalidRequest, "illegal characters in a parameter"),
    (
        -1102,
        "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
        InvalidRequest,
        "a mandatory parameter is missing, empty or malformed",
    ),
    (-1104, "UNREAD_PARAMETERS", InvalidRequest, "not all sent parameters were read"),
    (-1106, "PARAM_NOT_REQUIRED", InvalidRequest, "a parameter was sent that is not allowed"),
    (
        -1111,
        "BAD_PRECISION",
        FilterRejected,
        "price or quantity has more decimals than the symbol allows; round to exchangeInfo",
    ),
    (-1115, "INVALID_TIF", InvalidRequest, "invalid timeInForce"),
    (-1116, "INVALID_ORDER_TYPE", InvalidRequest, "invalid order type"),
    (-1117, "INVALID_SIDE", InvalidRequest, "invalid side"),
    (-1120, "BAD_INTERVAL", InvalidRequest, "invalid kline interval"),
    (-1121, "BAD_SYMBOL", InvalidRequest, "invalid symbol (unknown or delisted on USD-M)"),
    (
        -1125,
        "INVALID_LISTEN_KEY",
        ListenKeyInvalid,
        "listenKey does not exist; create a new one and resnapshot over REST",
    ),
    (
        -1127,
        "MORE_THAN_XX_HOURS",
        InvalidRequest,
        "startTime and endTime are further apart than the endpoint allows",
    ),
    (
        -1128,
        "OPTIONAL_PARAMS_BAD_COMBO",
        InvalidRequest,
        "combination of optional parameters is not valid",
    ),
    (-1130, "INVALID_PARAMETER", InvalidRequest, "data sent for a parameter is not valid"),
    # 20xx: order and account issues
    (-2010, "NEW_ORDER_REJECTED", OrderRejected, "new order rejected by the matching engine"),
    (
        -2011,
        "CANCEL_REJECTED",
        OrderAlreadyGone,
        "cancel rejected: the order is not open (already filled, cancelled or expired)",
    ),
    (-2013, "NO_SUCH_ORDER", OrderNotFound, "order does not exist"),
    (-2014, "BAD_API_KEY_FMT", AuthError, "API key format invalid"),
    (
        -2015,
        "REJECTED_MBX_KEY",
        AuthError,
        "invalid API key, IP not whitelisted, or key lacks futures permission",
    ),
    (-2018, "BALANCE_NOT_SUFFICIENT", InsufficientMargin, "balance is insufficient"),
    (-2019, "MARGIN_NOT_SUFFICIEN", InsufficientMargin, "margin is insufficient"),
    (
        -2021,
        "ORDER_WOULD_IMMEDIATELY_TRIGGER",
        OrderRejected,
        "stop price already crossed: the order would trigger immediately",
    ),
    (
        -2022,
        "REDUCE_ONLY_REJECT",
        ReduceOnlyRejected,
        "reduce-only order rejected: it would not reduce the position; re-read the position",
    ),
    (
        -2024,
        "POSITION_NOT_SUFFICIENT",
        PositionInsufficient,
        "position is smaller than the close quantity; re-read the position",
    ),
    (-2025, "MAX_OPEN_ORDER_EXCEEDED", OrderRejected, "symbol's open-order limit reached"),
    (
        -2027,
        "MAX_LEVERAGE_RATIO",
        InsufficientMargin,
        "position would exceed the maximum allowed at the current leverage",
    ),
    # 40xx: filters and parameters
    (-4001, "PRICE_LESS_THAN_ZERO", FilterRejected, "price is not positive"),
    (
        -4002,
        "PRICE_GREATER_THAN_MAX_PRICE",
        FilterRejected,
        "price above the symbol's PRICE_FILTER maximum",
    ),
    (-4003, "QTY_LESS_THAN_ZERO", FilterRejected, "quantity is not positive"),
    (
        -4004,
        "QTY_LESS_THAN_MIN_QTY",
        FilterRejected,
        "quantity below the symbol's LOT_SIZE / MARKET_LOT_SIZE minimum",
    ),
    (
        -4005,
        "QTY_GREATER_THAN_MAX_QTY",
        FilterRejected,
        "quantity above the symbol's LOT_SIZE / MARKET_LOT_SIZE maximum; split the order",
    ),
    (
        -4013,
        "PRICE_LESS_THAN_MIN_PRICE",
        FilterRejected,
        "price below the symbol's PRICE_FILTER minimum",
    ),
    (
        -4014,
        "PRICE_NOT_INCREASED_BY_TICK_SIZE",
        FilterRejected,
        "price is not a multiple of the tick size",
    ),
    (
        -4015,
        "INVALID_CL_ORD_ID_LEN",
        InvalidClientOrderId,
        "client order id is not valid (at most 36 characters of [.A-Z:/a-z0-9_-])",
    ),
    (
        -4016,
        "PRICE_GREATER_THAN_MULTIPLIER_UP",
        FilterRejected,
        "limit price above the PERCENT_PRICE band around the mark price",
    ),
    (
        -4023,
        "QTY_NOT_INCREASED_BY_STEP_SIZE",
        FilterRejected,
        "quantity is not a multiple of the step size",
    ),
    (
        -4024,
        "PRICE_LESS_THAN_MULTIPLIER_DOWN",
        FilterRejected,
        "limit price below the PERCENT_PRICE band around the mark price",
    ),
    (-4028, "INVALID_LEVERAGE", InvalidRequest, "leverage outside the symbol's brackets"),
    (
        -4045,
        "MAX_STOP_ORDER_EXCEEDED",
        OrderRejected,
        "symbol's limit of open conditional (algo) orders reached",
    ),
    (
        -4046,
        "NO_NEED_TO_CHANGE_MARGIN_TYPE",
        NoChangeNeeded,
        "margin type is already the one asked for",
    ),
    (
        -4047,
        "THERE_EXISTS_OPEN_ORDERS",
        InvalidRequest,
        "margin type cannot change while the symbol has open orders",
    ),
    (
        -4048,
        "THERE_EXISTS_QUANTITY",
        InvalidRequest,
        "margin type cannot change while the symbol has a position",
    ),
    (
        -4059,
        "NO_NEED_TO_CHANGE_POSITION_SIDE",
        NoChangeNeeded,
        "position mode is already the one asked for",
    ),
    (
        -4061,
        "POSITION_SIDE_NOT_MATCH",
        PositionSideMismatch,
        "positionSide does not match the account's position mode (one-way BOTH / hedge LONG+SHORT)",
    ),
    (
        -4067,
        "POSITION_SIDE_CHANGE_EXISTS_OPEN_ORDERS",
        InvalidRequest,
        "position mode cannot change while open orders exist",
    ),
    (
        -4068,
        "POSITION_SIDE_CHANGE_EXISTS_QUANTITY",
        InvalidRequest,
        "position mode cannot change while a position is open",
    ),
    (
        -4116,
        "DUPLICATED_CLIENT_ORDER_ID",
        DuplicateClientOrderId,
        "client order id is already used by an open order",
    ),
    (
        -4118,
        "REDUCE_ONLY_MARGIN_CHECK_FAILED",
        ReduceOnlyRejected,
        "reduce-only order failed: existing orders already cover the position",
    ),
    (
        -4120,
        "STOP_ORDER_SWITCH_ALGO",
        AlgoEndpointRequired,
        "order type not accepted here: use the algo order endpoints",
    ),
    (
        -4131,
        "MARKET_ORDER_REJECT",
        OrderRejected,
        "market order rejected: best price is outside the PERCENT_PRICE band",
    ),
    (
        -4167,
        "MULTI_ASSETS_WITH_ISOLATED_SYMBOLS",
        InvalidRequest,
        "multi-assets mode cannot be turned on while a symbol is in isolated margin",
    ),
    (
        -4168,
        "ISOLATED_IN_MULTI_ASSETS_MODE",
        InvalidRequest,
        "isolated margin cannot be chosen in multi-assets mode",
    ),
    (
        -4164,
        "MIN_NOTIONAL",
        MinNotionalRejected,
        "order notional below the symbol's minimum (unless reduce-only)",
    ),
    # 50xx: matching-engine rejections (and a path that does not exist or was retired)
    (
        -5000,
        "INVALID_PATH",
        InvalidRequest,
        "no such endpoint, or the endpoint was retired (the message names the replacement)",
    ),
    (-5021, "FOK_ORDER_REJECT", OrderRejected, "FOK order could not be filled completely"),
    (-5022, "GTX_ORDER_REJECT", OrderRejected, "post-only order would have taken liquidity"),
    (-5025, "ONLY_LIMIT_ORDER", OrderRejected, "only LIMIT orders can be amended"),
    (
        -5026,
        "EXCEED_MAXIMUM_MODIFY_ORDER_LIMIT",
        OrderRejected,
        "the order was amended the maximum number of times",
    ),
    (-5027, "SAME_ORDER", NoChangeNeeded, "the amendment changes neither price nor quantity"),
    (
        -5028,
        "ME_RECVWINDOW_REJECT",
        TimestampError,
        "request reached the matching engine outside recvWindow; resync server time",
    ),
)
