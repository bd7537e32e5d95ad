"""Injected faults: latency, bursts of 5xx, clock skew, slow order visibility.

Rate-limit faults (forced 429s, a forced 418 ban) live with the rate limiter
in ``weights.py``; WebSocket drops and listenKey expiry with the stream hub.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_5XX: dict[int, tuple[int, str]] = {
    500: (-1001, "Internal error; unable to process your request. Please try again."),
    502: (-1001, "Internal error; unable to process your request. Please try again."),
    503: (-1007, "Unknown error, please check your request or try again later."),
    504: (
        -1007,
        "Timeout waiting for response from backend server. "
        "Send status unknown; execution status unknown.",
    ),
}


@dataclass(slots=True)
class ErrorBurst:
    """The next ``remaining`` matching requests fail with ``status``."""

    remaining: int
    status: int
    code: int
    msg: str
    paths: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    apply: bool = False
    """Process the request first, then answer with the error (outcome unknown to the client)."""

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.paths is None or any(path.startswith(p) for p in self.paths)

    def dump(self) -> dict[str, Any]:
        return {
            "remaining": self.remaining,
            "status": self.status,
            "code": self.code,
            "msg": self.msg,
            "paths": list(self.paths) if self.paths else None,
            "methods": list(self.methods) if self.methods else None,
            "apply": self.apply,
        }


class Faults:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.rest_latency_ms = 0
        self.rest_latency_paths: tuple[str, ...] | None = None
        self.rest_latency_methods: tuple[str, ...] | None = None
        self.ws_latency_ms = 0
        self.clock_skew_ms = 0
        self.order_query_lag_ms = 0
        self.bursts: deque[ErrorBurst] = deque()
        self.injected_5xx = 0

    def add_burst(self, burst: ErrorBurst) -> None:
        self.bursts.append(burst)

    def latency_ms(self, method: str, path: str) -> int:
        """The REST latency of this request: ``rest_latency_ms`` when it matches the
        latency's methods and paths (None: every one)."""
        methods, paths = self.rest_latency_methods, self.rest_latency_paths
        if methods is not None and method not in methods:
            return 0
        if paths is not None and not any(path.startswith(p) for p in paths):
            return 0
        return self.rest_latency_ms

    def take_error(self, method: str, path: str) -> ErrorBurst | None:
        """The burst that fails this request, if any (one use of it is consumed)."""
        for burst in self.bursts:
            if burst.matches(method, path):
                burst.remaining -= 1
                if burst.remaining <= 0:
                    self.bursts.remove(burst)
                self.injected_5xx += 1
                return burst
        return None

    def dump(self) -> dict[str, Any]:
        return {
            "restLatencyMs": self.rest_latency_ms,
            "restLatencyPaths": list(self.rest_latency_paths) if self.rest_latency_paths else None,
            "restLatencyMethods": (
                list(self.rest_latency_methods) if self.rest_latency_methods else None
            ),
            "wsLatencyMs": self.ws_latency_ms,
            "clockSkewMs": self.clock_skew_ms,
            "orderQueryLagMs": self.order_query_lag_ms,
            "errorBursts": [b.dump() for b in self.bursts],
            "injected5xx": self.injected_5xx,
        }
