"""The venue's record of every write it received: when, from which API key, and its answer.

An account may hold several API keys (``SimConfig.more_keys``); each write
(``Endpoint.write``: placing or cancelling an order or algo order) is recorded
with the key that sent it, at the moment the venue checks it -- after any
injected latency, where ``recvWindow`` is judged -- and completed with the
HTTP status and Binance error code it was answered with. Observers are called
synchronously at that moment, before the write is processed, so an in-process
test can compare it with the state of the world right then (who holds an HA
lease, what the bot expects). ``GET /_sim/writes`` serves the log.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

WRITE_LOG_LIMIT = 100_000

_CLIENT_ID_PARAMS = ("origClientOrderId", "newClientOrderId", "clientAlgoId")


@dataclass(slots=True)
class WriteRecord:
    """One write as the venue received it; ``status``/``code`` once it was answered."""

    seq: int
    received_ms: int
    api_key: str | None
    method: str
    path: str
    client_order_id: str | None
    status: int | None = None
    code: int | None = None

    @property
    def executed(self) -> bool:
        """Answered 200: the venue carried it out."""
        return self.status == 200

    def dump(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "receivedMs": self.received_ms,
            "apiKey": self.api_key,
            "method": self.method,
            "path": self.path,
            "clientOrderId": self.client_order_id,
            "status": self.status,
            "code": self.code,
        }


def client_order_id_of(get: Callable[[str], str | None]) -> str | None:
    """The client order id a write names (cancel, new order or algo order), if any."""
    for name in _CLIENT_ID_PARAMS:
        value = get(name)
        if value:
            return value
    return None


class WriteLog:
    """Every write received, oldest first (at most ``WRITE_LOG_LIMIT`` kept)."""

    def __init__(self) -> None:
        self.records: deque[WriteRecord] = deque(maxlen=WRITE_LOG_LIMIT)
        self.observers: list[Callable[[WriteRecord], None]] = []
        self._seq = 0

    def received(
        self,
        *,
        now_ms: int,
        api_key: str | None,
        method: str,
        path: str,
        client_order_id: str | None,
    ) -> WriteRecord:
        self._seq += 1
        record = WriteRecord(self._seq, now_ms, api_key, method, path, client_order_id)
        self.records.append(record)
        for observer in list(self.observers):
            try:
                observer(record)
            except Exception:  # an observer's bug must not change the venue's answer
                log.exception("simulator: write observer failed")
        return record

    def clear(self) -> None:
        self.records.clear()

    def dump(self, api_key: str | None = None) -> list[dict[str, Any]]:
        return [r.dump() for r in self.records if api_key is None or r.api_key == api_key]
