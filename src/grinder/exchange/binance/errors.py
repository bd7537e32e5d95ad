"""Binance USDⓈ-M error responses → typed ``ExchangeError`` subclasses.

Every class here derives from :class:`grinder.exchange.port.ExchangeError`; the
ones worth retrying also derive from ``TransientExchangeError``. Match on the
class (or ``code``), never on the message text: Binance's wire wording differs
from its docs (``-2011`` arrives as "Unknown order sent.").

Hierarchy::

    ExchangeError
    └── BinanceError                      any refusal or failure reported by Binance
        ├── RequestRejected               4xx / unknown code: the request itself is wrong
        │   ├── AuthError                 -1002 -1022 -2014 -2015, HTTP 401
        │   ├── InvalidRequest            -1100 -1102 -1104 -1106 -1115 -1116 -1117 -1121
        │   │                             -1128 -1130 -4067 -4068 -5000
        │   ├── WafRejected               HTTP 403
        │   └── ListenKeyInvalid          -1125 (create a new listenKey, resnapshot)
        ├── NoChangeNeeded                -4059 (already in the asked mode: success)
        ├── OrderNotFound                 -2013 (a query found nothing)
        │   └── OrderAlreadyGone          -2011 (cancel of an order that is not open)
        ├── OrderRejected                 -2010 -2021 -2025 -4045 -4131 -5021 -5022
        │   ├── FilterRejected            -1111 -4001…-4005 -4013 -4014 -4016 -4023 -4024
        │   ├── MinNotionalRejected       -4164
        │   ├── InsufficientMargin        -2018 -2019 -2027
        │   ├── ReduceOnlyRejected        -2022 -4118
        │   │   └── PositionInsufficient  -2024 (re-read the position)
        │   ├── DuplicateClientOrderId    -4116
        │   ├── InvalidClientOrderId      -4015
        │   ├── PositionSideMismatch      -4061
        │   └── AlgoEndpointRequired      -4120
        ├── MalformedResponse             a 2xx body the parsers reject (to a read)
        │   └── MalformedWriteResponse    … to a write (``outcome_unknown``)
        └── BinanceTransientError (+ TransientExchangeError)
            ├── ServerError               HTTP 5xx, -1001 -1016
            │   └── ServerOverloaded      -1008
            ├── UnknownOutcome            -1000 -1006 -1007, HTTP 408, 503 "Unknown error…"
            ├── TimestampError            -1021 -5028 (resync server time, then retry)
            ├── RateLimited               HTTP 429, -1003, -1015 (``retry_after_s``)
            └── IpBanned                  HTTP 418 (``retry_after_s``, ``banned_until_ms``)

``IpBanned`` is deliberately *not* a ``RateLimited``: a ban is not waited out
inside one request. ``UnknownOutcome.outcome_unknown`` is True: the request may
have been executed, so a write must be reconciled (query by client id) before
it is sent again; reads can simply be repeated. ``repeatable`` (from
``ExchangeError``) is True for every transient error but ``RateLimited`` and
``IpBanned``: the remediation executor may send such a write again, re-authorized.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from grinder.exchange.port import ExchangeError, TransientExchangeError

__all__ = [
    "ERROR_SPECS",
    "AlgoEndpointRequired",
    "AuthError",
    "BinanceError",
    "BinanceTransientError",
    "DuplicateClientOrderId",
    "ErrorSpec",
    "FilterRejected",
    "InsufficientMargin",
    "InvalidClientOrderId",
    "InvalidRequest",
    "IpBanned",
    "ListenKeyInvalid",
    "MinNotionalRejected",
    "NoChangeNeeded",
    "OrderAlreadyGone",
    "OrderNotFound",
    "OrderRejected",
    "PositionInsufficient",
    "PositionSideMismatch",
    "RateLimited",
    "ReduceOnlyRejected",
    "RequestRejected",
    "ServerError",
    "ServerOverloaded",
    "TimestampError",
    "UnknownOutcome",
    "WafRejected",
    "error_from_response",
]


class BinanceError(ExchangeError):
    """A refusal or failure reported by Binance.

    ``code`` is Binance's error code (``None`` when the body had none),
    ``http_status`` the HTTP status (``None`` outside HTTP, e.g. a batch item),
    ``name`` Binance's symbolic name (``INVALID_TIMESTAMP``…), ``venue_msg``
    the message as sent, ``retry_after_s`` the ``Retry-After`` header if any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        name: str | None = None,
        venue_msg: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code, http_status=http_status)
        self.name = name
        self.venue_msg = venue_msg
        self.retry_after_s = retry_after_s


class RequestRejected(BinanceError):
    """The request was refused as sent (4xx); repeating it unchanged will not help."""


class AuthError(RequestRejected):
    """API key, signature, IP whitelist or permission problem."""


class InvalidRequest(RequestRejected):
    """A parameter is missing, malformed or not allowed (a bug on our side)."""


class WafRejected(RequestRejected):
    """HTTP 403: Binance's web application firewall refused the request."""


class ListenKeyInvalid(RequestRejected):
    """The listenKey does not exist (any more): create a new one and resnapshot."""


class NoChangeNeeded(BinanceError):
    """The account is already in the asked state (e.g. position mode): a success."""


class OrderNotFound(BinanceError):
    """The order is unknown to Binance (``-2013`` on a query)."""


class OrderAlreadyGone(OrderNotFound):
    """A cancel found no open order (``-2011``): filled, cancelled, expired or never
    there. For remediation this is ``CancelOutcome.ALREADY_GONE``."""


class OrderRejected(BinanceError):
    """A new order was refused; nothing was placed."""


class FilterRejected(OrderRejected):
    """Price or quantity breaks the symbol's filters: round to exchangeInfo."""


class MinNotionalRejected(OrderRejected):
    """Notional below MIN_NOTIONAL (reduce-only orders are exempt)."""


class InsufficientMargin(OrderRejected):
    """Not enough balance or margin, or over the leverage bracket."""


class ReduceOnlyRejected(OrderRejected):
    """A reduce-only order would not reduce the position (it is gone, smaller, on the
    other side, or covered by other reduce-only orders): re-read the position."""


class PositionInsufficient(ReduceOnlyRejected):
    """The close quantity exceeds the position: re-read the position."""


class DuplicateClientOrderId(OrderRejected):
    """An open order already uses this client order id (idempotency signal)."""


class InvalidClientOrderId(OrderRejected):
    """The client order id breaks ``^[.A-Z:/a-z0-9_-]{1,36}$``."""


class PositionSideMismatch(OrderRejected):
    """``positionSide`` does not match the account's one-way / hedge mode."""


class AlgoEndpointRequired(OrderRejected):
    """Conditional order types must go through the algo order endpoints."""


class MalformedResponse(BinanceError):
    """A successful response to a read that this client cannot parse (a field missing,
    a wrong type): nothing was learnt, the snapshot or query failed."""


class MalformedWriteResponse(MalformedResponse):
    """Binance accepted a write, but its response cannot be parsed: the result is
    unknown, so reconcile (query the order, re-read the position) before re-sending."""

    outcome_unknown: ClassVar[bool] = True


class BinanceTransientError(BinanceError, TransientExchangeError):
    """A Binance failure that may succeed later."""


class ServerError(BinanceTransientError):
    """Binance failed internally (5xx); the request was not processed. Retry with backoff."""


class ServerOverloaded(ServerError):
    """Binance shed load (``-1008``); reduce-only orders and cancels are exempt."""


class UnknownOutcome(BinanceTransientError):
    """Binance does not know whether the request was executed.

    Reads may be repeated; a write must be reconciled first (query the order by
    client id, or wait for the user-data stream), never blindly re-sent.
    """

    outcome_unknown: ClassVar[bool] = True


class TimestampError(BinanceTransientError):
    """The signed timestamp fell outside ``recvWindow``: resync server time and retry."""


class RateLimited(BinanceTransientError):
    """Request weight or order rate limit hit (429). The request was not processed.

    Not ``repeatable``: a write refused for the rate limit is not sent again in the same
    action (what goes out must have been decided just before)."""

    default_backoff_s: ClassVar[float] = 60.0
    repeatable: ClassVar[bool] = False

    @property
    def backoff_hint_s(self) -> float:
        """``Retry-After`` when sent, else a conservative default."""
        return self.retry_after_s if self.retry_after_s is not None else self.default_backoff_s


class IpBanned(BinanceTransientError):
    """HTTP 418: the IP is banned (2 minutes to 3 days) for ignoring 429s.

    ``banned_until_ms`` is read from the message when Binance states it.
    """

    default_backoff_s: ClassVar[float] = 120.0
    repeatable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        name: str | None = None,
        venue_msg: str | None = None,
        retry_after_s: float | None = None,
        banned_until_ms: int | None = None,
    ) -> None:
        super().__init__(
            message,
            code=code,
            http_status=http_status,
            name=name,
            venue_msg=venue_msg,
            retry_after_s=retry_after_s,
        )
        self.banned_until_ms = banned_until_ms

    @property
    def backoff_hint_s(self) -> float:
        """``Retry-After`` when sent, else a conservative default."""
        return self.retry_after_s if self.retry_after_s is not None else self.default_backoff_s


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
    (-1121, "BAD_SYMBOL", InvalidRequest, "invalid symbol (unknown or delisted on USD-M)"),
    (
        -1125,
        "INVALID_LISTEN_KEY",
        ListenKeyInvalid,
        "listenKey does not exist; create a new one and resnapshot over REST",
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
    (
        -4045,
        "MAX_STOP_ORDER_EXCEEDED",
        OrderRejected,
        "symbol's limit of open conditional (algo) orders reached",
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
    (
        -5028,
        "ME_RECVWINDOW_REJECT",
        TimestampError,
        "request reached the matching engine outside recvWindow; resync server time",
    ),
)

_BANNED_UNTIL = re.compile(r"banned until (\d{10,16})", re.IGNORECASE)
_MAX_VENUE_MSG = 300


def _describe_status(http_status: int | None) -> str:
    return f"HTTP {http_status}" if http_status is not None else "no HTTP status"


def _extract(body: Any) -> tuple[int | None, str | None]:
    """``(code, msg)`` from an error body, leniently: this path must never raise."""
    if not isinstance(body, Mapping):
        return None, None
    raw_code = body.get("code")
    code: int | None = None
    if isinstance(raw_code, int) and not isinstance(raw_code, bool) and abs(raw_code) < 10**9:
        code = raw_code
    elif isinstance(raw_code, str) and re.fullmatch(r"-?[0-9]{1,9}", raw_code):
        code = int(raw_code)
    raw_msg = body.get("msg")
    msg = raw_msg if isinstance(raw_msg, str) else None
    if msg is not None:
        msg = " ".join(msg.split())
        if len(msg) > _MAX_VENUE_MSG:
            msg = msg[:_MAX_VENUE_MSG] + "..."
    return code, msg


def _message(summary: str, name: str | None, http_status: int | None, msg: str | None) -> str:
    head = f"Binance {name}" if name else "Binance error"
    text = f"{head} ({_describe_status(http_status)}): {summary}"
    if msg:
        text += f"; venue said {msg!r}"
    return text


def error_from_response(
    http_status: int | None, body: Any, retry_after_s: float | None = None
) -> BinanceError:
    """The typed error for one failed response (never raises).

    ``body`` is the decoded JSON body (``{"code", "msg"}`` normally) or ``None``;
    ``retry_after_s`` the parsed ``Retry-After`` header. Precedence: HTTP 418 →
    :class:`IpBanned`; HTTP 429 → :class:`RateLimited`; a known code → its class
    (:data:`ERROR_SPECS`); then by HTTP status: 408 / 503 "Unknown error…" →
    :class:`UnknownOutcome`, other 5xx → :class:`ServerError`, 401 →
    :class:`AuthError`, 403 → :class:`WafRejected`; anything else →
    :class:`RequestRejected`.
    """
    code, msg = _extract(body)
    spec = ERROR_SPECS.get(code) if code is not None else None
    name = spec.name if spec is not None else None
    common: dict[str, Any] = {
        "code": code,
        "http_status": http_status,
        "name": name,
        "venue_msg": msg,
        "retry_after_s": retry_after_s,
    }

    banned = _BANNED_UNTIL.search(msg) if msg else None
    says_banned = msg is not None and "banned until" in msg.lower()
    if http_status == 418 or (code == -1003 and says_banned):
        summary = "IP banned for exceeding request limits; send nothing until the ban ends"
        return IpBanned(
            _message(summary, name, http_status, msg),
            banned_until_ms=int(banned.group(1)) if banned else None,
            **common,
        )
    if http_status == 429:
        summary = "request rate limit exceeded; back off"
        if spec is not None and spec.cls is RateLimited:
            summary = spec.summary
        return RateLimited(_message(summary, name, http_status, msg), **common)
    if spec is not None:
        return spec.cls(_message(spec.summary, name, http_status, msg), **common)

    lowered = (msg or "").lower()
    if http_status == 408 or (
        http_status is not None and http_status >= 500 and lowered.startswith("unknown error")
    ):
        summary = "Binance did not answer in time; execution status unknown"
        return UnknownOutcome(_message(summary, name, http_status, msg), **common)
    if http_status is not None and http_status >= 500:
        summary = "Binance server error; request not processed, retry with backoff"
        return ServerError(_message(summary, name, http_status, msg), **common)
    if http_status == 401:
        return AuthError(_message("not authenticated", name, http_status, msg), **common)
    if http_status == 403:
        summary = "refused by Binance's web application firewall"
        return WafRejected(_message(summary, name, http_status, msg), **common)
    if code is not None:
        summary = "request refused with an error code this client does not know"
    elif body is None:
        summary = "request refused without an error body"
    else:
        summary = "request refused; the error body has no usable code"
    return RequestRejected(_message(summary, name, http_status, msg), **common)
