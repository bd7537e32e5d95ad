"""Who may call what: the API key, the HMAC-SHA256 signature, and the recvWindow.

Security types as on Binance: ``NONE`` (market data), ``USER_STREAM`` (API key
only: listenKey), ``SIGNED`` (API key + ``timestamp`` + ``signature``). The
signature is checked over the exact bytes sent: the query string concatenated
with the form body, each without its ``signature`` parameter.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from urllib.parse import unquote_plus

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.params import Params

NONE = "NONE"
USER_STREAM = "USER_STREAM"
SIGNED = "SIGNED"


def check_api_key(sent: str | None, secret_of: Callable[[str], str | None]) -> str:
    """The secret of the API key ``sent``; -2014 / -2015 when there is none or it is unknown."""
    if not sent:
        raise E.err(E.BAD_API_KEY_FMT, status=401)
    secret = secret_of(sent)
    if secret is None:
        raise E.err(E.REJECTED_MBX_KEY, status=401)
    return secret


def split_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` without its ``signature=...`` pair, and the signature (if present)."""
    if not raw:
        return "", None
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&"):
        name, _, value = part.partition("=")
        if name == "signature":
            signature = unquote_plus(value)
        else:
            kept.append(part)
    return "&".join(kept), signature


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def check_signature(raw_query: str, raw_body: str, secret: str) -> None:
    query, sig_q = split_signature(raw_query)
    body, sig_b = split_signature(raw_body)
    signature = sig_b or sig_q
    if not signature:
        raise E.mandatory("signature")
    expected = sign(secret, query + body)
    if not hmac.compare_digest(expected, signature.lower()):
        raise E.err(E.INVALID_SIGNATURE)


def check_timestamp(
    params: Params, server_time_ms: int, default_window: int, max_window: int
) -> None:
    """Binance: ``ts < serverTime + 1000`` and ``serverTime - ts <= recvWindow``, else -1021."""
    timestamp = params.long("timestamp", required=True)
    assert timestamp is not None
    window = params.long("recvWindow")
    if window is None:
        window = default_window
    elif window <= 0 or window > max_window:
        raise E.invalid_value("recvWindow")
    if timestamp >= server_time_ms + 1000 or server_time_ms - timestamp > window:
        raise E.err(E.INVALID_TIMESTAMP)
