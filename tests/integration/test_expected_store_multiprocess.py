"""A bot process writes expected state through the recorder while this process reads it.

The writer is a real second process (``sys.executable`` running a small script
over the recorder API) on the same SQLite file in ``tmp_path``. Its operations
are a deterministic list of atomic units (one recorder call, or a ``batch()`` of
a fill plus the new intended position), so the reader can check every state it
sees against the states the writer passes through: each refresh must show
exactly the state after some unit (never half of one), never an earlier unit
than the previous refresh, and the last refresh the final state.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.state.sqlite import SqliteExpectedStore

pytestmark = pytest.mark.subprocess

WRITER_SOURCE = r'''
import os
import sys
from decimal import Decimal

SYMBOL = "BTCUSDT"


def build_ops(steps):
    """Units of work: each a list of (method, ts_ms, *args) applied as one transaction."""
    units = []
    t = 1_000_000
    filled = Decimal(0)
    prev = None
    for i in range(steps):
        t += 1
        cid = f"grinder_d_{SYMBOL}_1_1704067200_{i}"
        qty = f"0.{i % 997 + 1:03d}"
        units.append([("order_placed", t, cid, qty)])
        if i % 3 == 1:
            t += 1
            units.append([("cancel_sent", t, prev)])
        elif i % 3 == 2:
            t += 1
            filled += Decimal(qty)
            units.append([("order_filled", t, cid), ("position_intended", t, str(filled))])
        prev = cid
    return units


def apply(rec, now, unit):
    for method, ts, *args in unit:
        now["t"] = ts
        if method == "order_placed":
            rec.order_placed(args[0], SYMBOL, "BUY", args[1], "100.5")
        elif method == "position_intended":
            rec.position_intended(SYMBOL, args[0])
        else:
            getattr(rec, method)(*args)


def main():
    from grinder.state.recorder import ExpectedRecorder

    path, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = {"t": 0}
    rec = ExpectedRecorder(path, clock=lambda: now["t"])
    units = build_ops(steps)
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "crash_in_batch":
        apply(rec, now, units[0])
        with rec.batch():
            apply(rec, now, units[1])
            apply(rec, now, units[2])
            os._exit(3)  # dies holding an uncommitted transaction
    for unit in units:
        if len(unit) > 1:
            with rec.batch():
                apply(rec, now, unit)
        else:
            apply(rec, now, unit)
    rec.close()
    print(f"done {len(units)}", flush=True)


if __name__ == "__main__":
    main()
'''

_ns: dict[str, Any] = {}
exec(compile(WRITER_SOURCE, "writer.py", "exec"), _ns)
build_ops: Callable[[int], list[list[tuple[Any, ...]]]] = _ns["build_ops"]

Projection = tuple[tuple[Any, ...], tuple[Any, ...]]


def projected_states(
    units: list[list[tuple[Any, ...]]], *, with_orders: int | None = None
) -> Iterator[Projection]:
    """The expected-state projection after 0, 1, 2, ... units, by replaying them
    (only the states holding ``with_orders`` orders, when given)."""
    orders: dict[str, tuple[str, str, bool, int | None, int]] = {}
    positions: dict[tuple[str, str], str] = {}

    def snap() -> Projection:
        return tuple(sorted(orders.items())), tuple(sorted(positions.items()))

    if with_orders in (None, 0):
        yield snap()
    for unit in units:
        for method, ts, *args in unit:
            if method == "order_placed":
                orders[args[0]] = (str(Decimal(args[1])), "NEW", False, None, ts)
            elif method == "cancel_sent":
                qty, status, _, ended, created = orders[args[0]]
                orders[args[0]] = (qty, status, True, ended if ended else ts, created)
            elif method == "order_filled":
                qty, _, cancel, ended, created = orders[args[0]]
                orders[args[0]] = (qty, "FILLED", cancel, ended if ended else ts, created)
            elif method == "position_intended":
                positions[("BTCUSDT", "BOTH")] = str(Decimal(args[0]))
        if with_orders is None or len(orders) == with_orders:
            yield snap()


def project(store: SqliteExpectedStore) -> Projection:
    orders = {
        o.client_order_id: (
            str(o.qty),
            o.status.value,
            o.cancel_requested,
            o.ended_ts_ms,
            o.created_ts_ms,
        )
        for o in store.orders()
    }
    positions = {(p.symbol, p.position_side.value): str(p.qty) for p in store.positions()}
    return tuple(sorted(orders.items())), tuple(sorted(positions.items()))


def start_writer(tmp_path: Path, db: Path, mode: str, steps: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SOURCE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), mode, str(steps)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"writer did not start: {line!r} {err}")
    return proc


def go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def changed_between(a: Projection, b: Projection) -> tuple[set[str], set[tuple[str, str]]]:
    oa, ob = dict(a[0]), dict(b[0])
    pa, pb = dict(a[1]), dict(b[1])
    return (
        {k for k in oa.keys() | ob.keys() if oa.get(k) != ob.get(k)},
        {k for k in pa.keys() | pb.keys() if pa.get(k) != pb.get(k)},
    )


def test_reader_sees_every_write_of_a_concurrent_writer_process_whole_and_in_order(
    tmp_path: Path,
) -> None:
    db = tmp_path / "expected.db"
    steps = 600
    units = build_ops(steps)
    states = list(projected_states(units))
    index = {s: k for k, s in enumerate(states)}
    assert len(index) == len(states)  # every unit leaves a distinct state

    proc = start_writer(tmp_path, db, "run", steps)
    reader = SqliteExpectedStore(db, readonly=True)
    seen: list[int] = [0]
    refreshes = 0
    deadline = time.monotonic() + 60
    try:
        go(proc)
        while True:
            running = proc.poll() is None
            result = reader.refresh()  # raises on "database is locked" or any error
            refreshes += 1
            k = index.get(project(reader))
            assert k is not None, "reader saw a state the writer never committed"
            assert k >= seen[-1], f"reader went back from unit {seen[-1]} to {k}"
            order_ids, position_keys = changed_between(states[seen[-1]], states[k])
            assert order_ids <= result.order_ids
            assert {(s, p) for s, p in position_keys} <= {
                (s, p.value) for s, p in result.position_keys
            }
            if k != seen[-1]:
                seen.append(k)
            if not running:
                break
            assert time.monotonic() < deadline, "writer did not finish in time"
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.close()

    assert code == 0, err
    assert "locked" not in err
    assert out.strip() == f"done {len(units)}"
    assert seen[-1] == len(units), "the last refresh must show the writer's final state"
    intermediate = [k for k in seen if 0 < k < len(units)]
    assert len(intermediate) >= 2, f"reader never overlapped the writer ({refreshes} refreshes)"


def test_two_writer_processes_on_one_file_never_hit_database_locked(tmp_path: Path) -> None:
    db = tmp_path / "expected.db"
    steps = 300
    units = build_ops(steps)
    final = list(projected_states(units))[-1]

    proc = start_writer(tmp_path, db, "run", steps)
    mine = SqliteExpectedStore(db, busy_timeout_ms=10_000)
    writes = 0
    try:
        go(proc)
        deadline = time.monotonic() + 60
        while proc.poll() is None or writes < 50:
            writes += 1
            mine.set_position("ETHUSDT", Decimal(writes), writes)  # raises if locked
            mine.evict_expired(0)
            mine.refresh()
            assert time.monotonic() < deadline
        code, _, err = finish(proc)
        mine.refresh()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mine.close()

    assert code == 0, err
    assert "locked" not in err
    with SqliteExpectedStore(db, readonly=True) as check:
        orders, positions = project(check)
        assert orders == final[0]
        assert dict(positions) == {**dict(final[1]), ("ETHUSDT", "BOTH"): str(writes)}


def test_writer_dying_inside_a_batch_leaves_no_trace_of_it(tmp_path: Path) -> None:
    db = tmp_path / "expected.db"
    units = build_ops(10)
    states = list(projected_states(units))
    proc = start_writer(tmp_path, db, "crash_in_batch", 10)
    go(proc)
    code, _, err = finish(proc)
    assert code == 3, err

    with SqliteExpectedStore(db, readonly=True) as reader:
        assert project(reader) == states[1]  # the committed unit, nothing of the batch
    with SqliteExpectedStore(db, busy_timeout_ms=2_000) as writer:  # no lock left behind
        writer.set_position("ETHUSDT", Decimal("1"), 1)
        writer.remove_order(units[0][0][2])
    with SqliteExpectedStore(db, readonly=True) as reader:
        assert project(reader)[0] == ()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_mid_stream_leaves_a_whole_committed_state(tmp_path: Path) -> None:
    db = tmp_path / "expected.db"
    steps = 200_000  # far more than it can write before it is killed
    proc = start_writer(tmp_path, db, "run", steps)
    reader = SqliteExpectedStore(db, readonly=True)
    try:
        go(proc)
        deadline = time.monotonic() + 30
        while len(reader) < 200:  # let it get going
            time.sleep(0.01)
            reader.refresh()
            assert proc.poll() is None, "writer ended early"
            assert time.monotonic() < deadline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.close()

    with SqliteExpectedStore(db, readonly=True) as after:
        observed = project(after)
    n_orders = len(observed[0])
    units = build_ops(n_orders + 1)
    matches = [s for s in projected_states(units, with_orders=n_orders) if s == observed]
    assert matches, "state after the kill is not one the writer ever committed"
    with SqliteExpectedStore(db) as writer:  # recovers and accepts writes
        writer.set_position("ETHUSDT", Decimal("1"), 1)


HEARTBEAT_BOT = r"""
import sys
import time

from grinder.state.recorder import ExpectedRecorder

path, beats, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with ExpectedRecorder(path) as rec:
    print("open", flush=True)
    sys.stdin.readline()
    rec.order_placed("grinder_d_BTCUSDT_1_1704067200_1", "BTCUSDT", "BUY", "0.002", "20000")
    print("recorded", flush=True)
    for _ in range(beats):
        time.sleep(every)
        rec.heartbeat()
    print("stopped", flush=True)
    sys.stdin.readline()
"""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _expect(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    got = proc.stdout.readline().strip()
    if got != line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"bot said {got!r}, not {line!r}: {err}")


def test_a_bot_process_heartbeats_and_the_reader_sees_it_live_then_stale(tmp_path: Path) -> None:
    """The recorder in a bot process stamps the heartbeat; the service's read-only store in this
    process sees it fresh while the bot beats, and ageing once it stops. A second writer that is
    not the bot (adoption) changes nothing of it."""
    db = tmp_path / "expected.db"
    script = tmp_path / "bot.py"
    script.write_text(HEARTBEAT_BOT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), "15", "0.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _expect(proc, "open")
        reader = SqliteExpectedStore(db, readonly=True)
        assert reader.heartbeat_age_s(_wall_ms()) == math.inf  # created, not yet written
        go(proc)
        _expect(proc, "recorded")
        reader.refresh()
        first = reader.bot_heartbeat_ms
        assert first is not None
        assert reader.heartbeat_age_s(_wall_ms()) < 2.0
        beats = {first}
        while proc.stdout is not None and proc.poll() is None and len(beats) < 10:
            changed = reader.refresh()
            assert not changed.changed  # heartbeats change no record
            assert reader.heartbeat_age_s(_wall_ms()) < 2.0
            assert reader.bot_heartbeat_ms is not None
            assert reader.bot_heartbeat_ms >= max(beats)
            beats.add(reader.bot_heartbeat_ms)
            time.sleep(0.05)
        assert len(beats) >= 5, f"the reader saw {len(beats)} heartbeats"
        _expect(proc, "stopped")
        reader.refresh()
        last = reader.bot_heartbeat_ms
        assert last is not None
        time.sleep(0.3)
        reader.refresh()
        assert reader.bot_heartbeat_ms == last
        assert reader.heartbeat_age_s(_wall_ms()) >= 0.3
        assert reader.heartbeat_age_s(last + 61_000) > 60  # stale for the default limit
        with SqliteExpectedStore(db) as adopter:  # another writer, not the bot
            adopter.set_position("ETHUSDT", Decimal("0.1"), _wall_ms())
        assert reader.refresh().position_keys
        assert reader.bot_heartbeat_ms == last
        go(proc)
        code, _, err = finish(proc)
        assert code == 0, err
        reader.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
