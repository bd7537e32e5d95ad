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
from typing import Any, ClassVar

from grinder.exchange.port import ExchangeError, TransientExchangeError

__all__ = [
    "AlgoEndpointRequired",
    "AuthError",
    "BinanceError",
    "BinanceTransientError",
    "DuplicateClientOrderId",
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
    (``error_codes.ERROR_SPECS``); then by HTTP status: 408 / 503 "Unknown error…" →
    :class:`UnknownOutcome`, other 5xx → :class:`ServerError`, 401 →
    :class:`AuthError`, 403 → :class:`WafRejected`; anything else →
    :class:`RequestRejected`.
    """
    from grinder.exchange.binance.error_codes import ERROR_SPECS  # the table needs the classes

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
    return _by_status(http_status, code, body, msg, common)


def _by_status(
    http_status: int | None, code: int | None, body: Any, msg: str | None, common: dict[str, Any]
) -> BinanceError:
    """The error for a response whose code is not in the table: by its HTTP status."""
    lowered = (msg or "").lower()
    if http_status == 408 or (
        http_status is not None and http_status >= 500 and lowered.startswith("unknown error")
    ):
        summary = "Binance did not answer in time; execution status unknown"
        return UnknownOutcome(_message(summary, None, http_status, msg), **common)
    if http_status is not None and http_status >= 500:
        summary = "Binance server error; request not processed, retry with backoff"
        return ServerError(_message(summary, None, http_status, msg), **common)
    if http_status == 401:
        return AuthError(_message("not authenticated", None, http_status, msg), **common)
    if http_status == 403:
        summary = "refused by Binance's web application firewall"
        return WafRejected(_message(summary, None, http_status, msg), **common)
    if code is not None:
        summary = "request refused with an error code this client does not know"
    elif body is None:
        summary = "request refused without an error body"
    else:
        summary = "request refused; the error body has no usable code"
    return RequestRejected(_message(summary, None, http_status, msg), **common)
