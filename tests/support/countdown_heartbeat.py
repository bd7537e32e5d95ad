"""A client that keeps a ``countdownCancelAll`` timer alive, as a dead-man switch does.

``python -m tests.support.countdown_heartbeat URL KEY SECRET SYMBOL COUNTDOWN_MS EVERY_MS
MAX_BEATS``: every ``EVERY_MS`` it re-arms the symbol's timer to ``COUNTDOWN_MS`` (signed
as the docs say), prints ``beat N``, and stops by itself after ``MAX_BEATS``. Tests pause
(SIGSTOP) or kill it to play a client that hangs or dies.
"""

from __future__ import annotations

import hashlib
import hmac
import sys
import time
import urllib.parse
import urllib.request


def beat(url: str, key: str, secret: str, symbol: str, countdown_ms: int) -> int:
    query = urllib.parse.urlencode(
        {"symbol": symbol, "countdownTime": countdown_ms, "timestamp": int(time.time() * 1000)}
    )
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{url}/fapi/v1/countdownCancelAll",
        data=f"{query}&signature={signature}".encode(),
        headers={"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def main(argv: list[str]) -> int:
    url, key, secret, symbol, countdown, every, beats = argv
    for n in range(1, int(beats) + 1):
        status = beat(url, key, secret, symbol, int(countdown))
        print(f"beat {n} {status}", flush=True)
        time.sleep(int(every) / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
