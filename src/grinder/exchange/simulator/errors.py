"""Binance error codes and messages, as the simulator returns them.

An ``ErrorReply`` becomes an HTTP response with Binance's body
``{"code": -NNNN, "msg": "..."}``. Messages follow the wire text where it is
known to differ from the docs (e.g. -2011 "Unknown order sent."); parameter
names in -1102/-1106 messages are lower-cased as the venue does.
"""

from __future__ import annotations


class ErrorReply(Exception):
    """A request the venue refuses, with Binance's code, message and HTTP status."""

    def __init__(
        self,
        code: int,
        msg: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
LONG_RANGE = r"^[0-9]{1,20}$"
CLIENT_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"

# Fixed messages (code -> msg).
UNKNOWN = (-1000, "An unknown error occured while processing the request.")
INTERNAL = (-1001, "Internal error; unable to process your request. Please try again.")
INVALID_TIMESTAMP = (-1021, "Timestamp for this request is outside of the recvWindow.")
INVALID_SIGNATURE = (-1022, "Signature for this request is not valid.")
START_AFTER_END = (-1023, "Start time is greater than end time.")
BAD_PRECISION = (-1111, "Precision is over the maximum defined for this asset.")
INVALID_TIF = (-1115, "Invalid timeInForce.")
INVALID_ORDER_TYPE = (-1116, "Invalid orderType.")
INVALID_SIDE = (-1117, "Invalid side.")
BAD_INTERVAL = (-1120, "Invalid interval.")
BAD_SYMBOL = (-1121, "Invalid symbol.")
INVALID_LISTEN_KEY = (
    -1125,
    "This listenKey does not exist. Please use `POST /fapi/v1/listenKey` to recreate `listenKey`",
)
BAD_COMBO = (-1128, "Combination of optional parameters invalid.")
CANCEL_REJECTED = (-2011, "Unknown order sent.")
NO_SUCH_ORDER = (-2013, "Order does not exist.")
BAD_API_KEY_FMT = (-2014, "API-key format invalid.")
REJECTED_MBX_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
WOULD_TRIGGER = (-2021, "Order would immediately trigger.")
REDUCE_ONLY_REJECT = (-2022, "ReduceOnly Order is rejected.")
MAX_OPEN_ORDERS = (-2025, "Reach max open order limit.")
MAX_LEVERAGE_RATIO = (-2027, "Exceeded the maximum allowable position at current leverage.")
PRICE_LE_ZERO = (-4001, "Price less than 0.")
PRICE_GT_MAX = (-4002, "Price greater than max price.")
QTY_LE_ZERO = (-4003, "Quantity less than or equal to zero.")
QTY_LT_MIN = (-4004, "Quantity less than min quantity.")
QTY_GT_MAX = (-4005, "Quantity greater than max quantity.")
PRICE_LT_MIN = (-4013, "Price less than min price.")
PRICE_TICK = (-4014, "Price not increased by tick size.")
CLIENT_ID_INVALID = (-4015, "Client order id is not valid.")
QTY_STEP = (-4023, "Qty not increased by step size.")
NO_NEED_MARGIN_TYPE = (-4046, "No need to change margin type.")
MARGIN_TYPE_OPEN_ORDERS = (-4047, "Margin type cannot be changed if there exists open orders.")
MARGIN_TYPE_POSITION = (-4048, "Margin type cannot be changed if there exists position.")
MAX_ALGO_ORDERS = (-4045, "Reach max stop order limit.")
NO_NEED_POSITION_SIDE = (-4059, "No need to change position side.")
POSITION_SIDE_MISMATCH = (-4061, "Order's position side does not match user's setting.")
POSITION_SIDE_OPEN_ORDERS = (-4067, "Position side cannot be changed if there exists open orders.")
POSITION_SIDE_POSITION = (-4068, "Position side cannot be changed if there exists position.")
DUPLICATED_CLIENT_ID = (-4116, "clientOrderId is duplicated")
USE_ALGO_ENDPOINT = (
    -4120,
    "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
)
MULTI_ASSETS_WITH_ISOLATED = (
    -4167,
    "Unable to adjust to Multi-Assets mode with symbols of USDⓈ-M Futures under "
    "isolated-margin mode.",
)
ISOLATED_IN_MULTI_ASSETS = (
    -4168,
    "Unable to adjust to isolated-margin mode under the Multi-Assets mode.",
)
FOK_REJECT = (
    -5021,
    "Due to the order could not be filled immediately, the FOK order has been rejected.",
)
GTX_REJECT = (
    -5022,
    "Due to the order could not be executed as maker, the Post Only order will be rejected. "
    "The order will not be recorded in the order history",
)

MAX_MODIFY = (-5026, "Exceeded maximum modify order limit.")
NO_NEED_MODIFY = (-5027, "No need to modify the order.")


def err(pair: tuple[int, str], status: int = 400) -> ErrorReply:
    """A ``ErrorReply`` from one of the ``(code, msg)`` constants above."""
    return ErrorReply(pair[0], pair[1], status)


def mandatory(name: str) -> ErrorReply:
    return ErrorReply(
        -1102, f"Mandatory parameter '{name.lower()}' was not sent, was empty/null, or malformed."
    )


def either_mandatory(first: str, second: str) -> ErrorReply:
    return ErrorReply(
        -1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!"
    )


def not_required(name: str) -> ErrorReply:
    return ErrorReply(-1106, f"Parameter '{name.lower()}' sent when not required.")


def illegal_chars(name: str, legal: str) -> ErrorReply:
    return ErrorReply(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def invalid_value(name: str) -> ErrorReply:
    return ErrorReply(-1130, f"Data sent for parameter '{name}' is not valid.")


def min_notional(notional_text: str) -> ErrorReply:
    return ErrorReply(
        -4164,
        f"Order's notional must be no smaller than {notional_text} (unless you choose reduce only)",
    )


def limit_price_high(limit_text: str) -> ErrorReply:
    return ErrorReply(-4016, f"Limit price can't be higher than {limit_text}.")


def limit_price_low(limit_text: str) -> ErrorReply:
    return ErrorReply(-4024, f"Limit price can't be lower than {limit_text}.")


def too_many_requests(limit: int) -> ErrorReply:
    return ErrorReply(
        -1003,
        f"Too many requests; current limit of IP is {limit} requests per minute. "
        "Please use the websocket for live updates to avoid polling the API.",
        status=429,
    )


def ip_banned(until_ms: int) -> ErrorReply:
    return ErrorReply(
        -1003,
        f"Way too many requests; IP banned until {until_ms}. "
        "Please use the websocket for live updates to avoid bans.",
        status=418,
    )


def too_many_orders(limit: int, interval: str) -> ErrorReply:
    return ErrorReply(
        -1015, f"Too many new orders; current limit is {limit} orders per {interval}.", status=429
    )


def more_than_hours(hours: int) -> ErrorReply:
    return ErrorReply(-1127, f"More than {hours} hours between startTime and endTime.")
