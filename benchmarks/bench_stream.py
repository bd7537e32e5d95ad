"""User-data events parsed and applied per second, on one core.

Builds a realistic mix of raw ``ORDER_TRADE_UPDATE`` (NEW, partial fill, fill,
cancel) and ``ACCOUNT_UPDATE`` messages as JSON text, then times
``parse_user_event`` (JSON decoding included) followed by ``apply_user_event``
into an ``ObservedStore``. Target: >= 50,000 events/s.

Run: ``.venv/bin/python -m benchmarks.bench_stream [--events N] [--repeats N] [--quick]``
(``--quick``: 20,000 events, best of 1).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time

from grinder.exchange.binance.apply import apply_user_event
from grinder.exchange.binance.parsing import parse_user_event
from grinder.state.observed import ObservedStore

TARGET_PER_S = 50_000
T0 = 1_800_000_000_000


def order_event(i: int, cid: str, symbol: str, x: str, status: str, filled: str, ts: int) -> str:
    return json.dumps(
        {
            "e": "ORDER_TRADE_UPDATE",
            "E": ts + 1,
            "T": ts,
            "o": {
                "s": symbol,
                "c": cid,
                "S": "BUY" if i % 2 else "SELL",
                "o": "LIMIT",
                "f": "GTC",
                "q": "0.010",
                "p": f"{100 + i % 997}.{i % 10}",
                "ap": "0",
                "sp": "0",
                "x": x,
                "X": status,
                "i": 8_000_000_000 + i,
                "l": "0.005" if x == "TRADE" else "0",
                "z": filled,
                "L": "100.5",
                "N": "USDT",
                "n": "0.001",
                "T": ts,
                "t": i,
                "b": "0",
                "a": "0",
                "m": False,
                "R": False,
                "wt": "CONTRACT_PRICE",
                "ot": "LIMIT",
                "ps": "BOTH",
                "cp": False,
                "rp": "0",
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_TAKER",
                "pm": "NONE",
                "gtd": 0,
            },
        }
    )


def account_event(i: int, symbol: str, ts: int) -> str:
    return json.dumps(
        {
            "e": "ACCOUNT_UPDATE",
            "E": ts + 1,
            "T": ts,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": "1000.0", "cw": "1000.0", "bc": "0"}],
                "P": [
                    {
                        "s": symbol,
                        "pa": f"0.{i % 1000:03d}",
                        "ep": "100.5",
                        "bep": "100.5",
                        "cr": "0",
                        "up": "0",
                        "mt": "cross",
                        "iw": "0",
                        "ps": "BOTH",
                    }
                ],
            },
        }
    )


def build(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    symbols = [f"S{k:02d}USDT" for k in range(20)]
    out: list[str] = []
    i = 0
    while len(out) < n:
        symbol = rng.choice(symbols)
        cid = f"grinder_d_{symbol}_{i % 50}_1800000000_{i}"
        ts = T0 + i * 10
        out.append(order_event(i, cid, symbol, "NEW", "NEW", "0", ts))
        out.append(order_event(i, cid, symbol, "TRADE", "PARTIALLY_FILLED", "0.005", ts + 1))
        if i % 3:
            out.append(order_event(i, cid, symbol, "TRADE", "FILLED", "0.010", ts + 2))
            out.append(account_event(i, symbol, ts + 2))
        else:
            out.append(order_event(i, cid, symbol, "CANCELED", "CANCELED", "0.005", ts + 2))
        i += 1
    return out[:n]


def run(messages: list[str]) -> tuple[float, int]:
    store = ObservedStore()
    applied = 0
    gc.disable()
    try:
        t0 = time.perf_counter()
        for k, raw in enumerate(messages):
            event = parse_user_event(raw, seen_ts_ms=T0 + k)
            applied += apply_user_event(store, event)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    return elapsed, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="default 200,000")
    parser.add_argument("--repeats", type=int, default=None, help="default 3")
    parser.add_argument("--quick", action="store_true", help="20,000 events, best of 1")
    args = parser.parse_args()
    events = args.events if args.events is not None else (20_000 if args.quick else 200_000)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if events < 1 or repeats < 1:
        parser.error("--events and --repeats must be at least 1")
    messages = build(events)
    best = float("inf")
    applied = 0
    for _ in range(repeats):
        elapsed, applied = run(messages)
        best = min(best, elapsed)
    rate = len(messages) / best
    verdict = "meets" if rate >= TARGET_PER_S else "MISSES"
    print("user-data events: parse_user_event (JSON text) + apply_user_event into ObservedStore")
    print(f"events:        {len(messages):,} ({applied:,} changed the store)")
    print(f"best of {repeats}:    {best * 1000:.1f} ms")
    print(f"rate:          {rate:,.0f} events/s ({verdict} the {TARGET_PER_S:,}/s target)")
    print(f"per event:     {best / len(messages) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
