"""API key, HMAC-SHA256 signatures over the exact bytes sent, and the recvWindow rule."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from grinder.exchange.simulator import auth
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.params import Params

SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def hmac_hex(payload: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def code(fn: object, *args: object) -> int:
    with pytest.raises(ErrorReply) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.code


def test_binances_documented_example_signature_verifies() -> None:
    query = (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
        "&recvWindow=5000&timestamp=1591702613943"
    )
    signature = hmac_hex(query)
    auth.check_signature(f"{query}&signature={signature}", "", SECRET)
    auth.check_signature("", f"{query}&signature={signature}", SECRET)


def test_query_and_body_are_concatenated_without_a_separator() -> None:
    query, body = "symbol=BTCUSDT&side=BUY", "quantity=1&timestamp=1"
    signature = hmac_hex(query + body)
    auth.check_signature(query, f"{body}&signature={signature}", SECRET)
    assert (
        code(
            auth.check_signature, query, f"{body}&signature={hmac_hex(query + '&' + body)}", SECRET
        )
        == -1022
    )


def test_a_wrong_or_altered_signature_is_1022() -> None:
    query = "symbol=BTCUSDT&timestamp=1"
    assert code(auth.check_signature, f"{query}&signature={'0' * 64}", "", SECRET) == -1022
    good = hmac_hex(query)
    tampered = "symbol=ETHUSDT&timestamp=1"
    assert code(auth.check_signature, f"{tampered}&signature={good}", "", SECRET) == -1022
    assert code(auth.check_signature, f"{query}&signature={good}", "", "other") == -1022


def test_the_signature_is_over_the_encoded_text_as_sent() -> None:
    query = "symbol=BTCUSDT&newClientOrderId=a%2Fb&timestamp=1"
    auth.check_signature(f"{query}&signature={hmac_hex(query)}", "", SECRET)
    decoded = "symbol=BTCUSDT&newClientOrderId=a/b&timestamp=1"
    assert code(auth.check_signature, f"{query}&signature={hmac_hex(decoded)}", "", SECRET) == -1022


def test_uppercase_hex_signatures_are_accepted() -> None:
    query = "timestamp=1"
    auth.check_signature(f"{query}&signature={hmac_hex(query).upper()}", "", SECRET)


def test_a_missing_signature_is_1102() -> None:
    assert code(auth.check_signature, "timestamp=1", "", SECRET) == -1102


def test_api_key_missing_is_2014_and_wrong_is_2015_both_http_401() -> None:
    keys = {"key": "secret", "second": "other"}
    with pytest.raises(ErrorReply) as info:
        auth.check_api_key(None, keys.get)
    assert (info.value.code, info.value.status) == (-2014, 401)
    with pytest.raises(ErrorReply) as info:
        auth.check_api_key("nope", keys.get)
    assert (info.value.code, info.value.status) == (-2015, 401)
    assert info.value.msg == "Invalid API-key, IP, or permissions for action."
    assert auth.check_api_key("key", keys.get) == "secret"
    assert auth.check_api_key("second", keys.get) == "other"


@pytest.mark.parametrize(
    ("timestamp", "recv_window", "ok"),
    [
        (100_000, None, True),
        (100_999, None, True),  # up to 1 s ahead of the server
        (101_000, None, False),
        (95_000, None, True),  # exactly recvWindow (5000) behind
        (94_999, None, False),
        (50_000, "60000", True),
        (39_999, "60000", False),
    ],
)
def test_recv_window_rule(timestamp: int, recv_window: str | None, ok: bool) -> None:
    params = Params.of(timestamp=timestamp, recvWindow=recv_window)
    if ok:
        auth.check_timestamp(params, 100_000, 5000, 60000)
    else:
        with pytest.raises(ErrorReply) as info:
            auth.check_timestamp(params, 100_000, 5000, 60000)
        assert (info.value.code, info.value.msg) == (
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        )


def test_timestamp_is_mandatory_and_recv_window_bounded() -> None:
    assert code(auth.check_timestamp, Params(), 1, 5000, 60000) == -1102
    assert code(auth.check_timestamp, Params.of(timestamp=1, recvWindow=60001), 1, 5000, 60000) == (
        -1130
    )
    assert code(auth.check_timestamp, Params.of(timestamp="x"), 1, 5000, 60000) == -1100
