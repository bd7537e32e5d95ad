"""Expected state in Redis, shared by a bot (writer) and every HA instance (readers).

The third backend beside ``MemoryExpectedStore`` and ``SqliteExpectedStore``, for
deployments where the reconcilers run on several hosts: a new leader reads the
same expected state the old one did and continues where it stopped.

Same read protocol and write semantics as the other two (bounded size, ended
orders kept ``terminal_ttl_ms`` and evicted first, ``ExpectedStoreFull`` rather
than forgetting an open order, ``UnknownOrder`` for an unknown id). Like the
SQLite store, **reads serve an in-memory mirror** refreshed by ``refresh()``
once per reconcile cycle, incrementally through a change sequence:

* ``<ns>:expected:orders`` / ``…:positions`` -- hashes of JSON records;
* ``<ns>:expected:seq`` -- the change sequence (INCR on every write);
* ``<ns>:expected:changes`` -- sorted set: member ``o:<client id>`` or
  ``p:<symbol>|<side>`` scored by the sequence of its last change;
* ``<ns>:expected:ended`` -- ended orders by end time (eviction order);
* ``<ns>:expected:tombstones`` / ``…:floor`` -- removed orders, purged past
  ``tombstone_retention``; a reader behind the floor reloads everything;
* ``<ns>:expected:heartbeat`` -- when a bot last wrote (Redis server time, ms).

**The bot's heartbeat.** The service trusts the expected state only while a bot
keeps writing it. A store opened with ``bot=True`` is the bot's: each of its
writes stamps the heartbeat, and ``heartbeat()`` stamps it alone (call it from
the bot's main loop every 10 s). Other writers (``grinder expected adopt``) leave
it as it is. The stamp is the Redis server's clock, and readers measure its age
against the same clock (``TIME`` in the refresh's round trip), so the hosts'
clocks do not matter. ``heartbeat_age_s()`` is that age, plus the time since the
refresh on the reader's clock; a refresh that fails keeps the last age growing.

Every write is one Lua script (atomic); status changes are compare-and-set on
the stored record, retried on a concurrent change. The keys and the scripts are
in ``grinder.state.redis_scripts``, the record format in
``grinder.state.redis_records``.

**Durability.** The rule for bots is "record, then send". Redis must then keep
what it acknowledged: run it with AOF (``appendonly yes``, ``appendfsync
always`` -- or ``everysec`` if losing the last second is acceptable). If Redis
loses its data anyway, the deployment's epoch (``<ns>:epoch``) changes; a reader
that had a mirror then keeps it and merges what is in Redis now over it
(``epoch_resets`` counts it, a warning is logged), so the bot's earlier orders
do not suddenly look unexpected. A reader started after the loss cannot know
them: re-record or re-adopt the baseline before arming (docs/HA.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from grinder.clock import Clock, wall_clock_ms
from grinder.ha.connection import RedisConnection
from grinder.reconcile.types import (
    ExpectedOrder,
    ExpectedPosition,
    OrderStatus,
    PositionKey,
    PositionSide,
)
from grinder.state.expected import (
    DEFAULT_MAX_ORDERS,
    DEFAULT_TERMINAL_TTL_MS,
    DEFAULT_TOMBSTONE_RETENTION,
    NEVER,
    ExpectedStoreError,
    ExpectedStoreFull,
    MirrorReads,
    RefreshResult,
    UnknownOrder,
    book_cancel_requested,
    book_status,
)
from grinder.state.redis_records import (
    decode_order,
    decode_position,
    encode_order,
    encode_position,
    position_field,
)
from grinder.state.redis_scripts import (
    EVICT_LUA,
    HEARTBEAT_LUA,
    POSITION_LUA,
    RECORD_LUA,
    REMOVE_LUA,
    UPDATE_LUA,
    RedisKeys,
)

log = logging.getLogger("grinder.state")

CAS_ATTEMPTS = 20


class RedisExpectedStore(MirrorReads):
    """Expected state in Redis, read through an in-memory mirror (see the module doc).

    Writes raise ``RedisUnavailable`` when Redis does not answer (the bot must
    then not send the order it was about to record); ``refresh()`` raises it too,
    and the mirror stays as it was.
    """

    def __init__(
        self,
        conn: RedisConnection,
        *,
        max_orders: int = DEFAULT_MAX_ORDERS,
        terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS,
        readonly: bool = False,
        tombstone_retention: int = DEFAULT_TOMBSTONE_RETENTION,
        load: bool = True,
        bot: bool = False,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """``bot``: this instance is the bot's, its writes stamp the heartbeat. ``clock``
        (ms) measures the time since the last refresh for ``heartbeat_age_s``."""
        if max_orders < 1:
            raise ValueError("max_orders must be >= 1")
        if tombstone_retention < 0:
            raise ValueError("tombstone_retention must be >= 0")
        self.conn = conn
        self.max_orders = max_orders
        self.terminal_ttl_ms = terminal_ttl_ms
        self.readonly = readonly
        self.tombstone_retention = tombstone_retention
        self.bot = bot
        self.clock = clock
        self.keys = RedisKeys.of(conn)
        self.where = f"expected state in Redis {conn.display_url} ({conn.key('expected', '*')})"
        self._record = conn.script(RECORD_LUA)
        self._update = conn.script(UPDATE_LUA)
        self._remove = conn.script(REMOVE_LUA)
        self._evict = conn.script(EVICT_LUA)
        self._position = conn.script(POSITION_LUA)
        self._heartbeat = conn.script(HEARTBEAT_LUA)
        self._orders: dict[str, ExpectedOrder] = {}
        self._positions: dict[PositionKey, ExpectedPosition] = {}
        self._seen_seq = -1
        self._epoch: str | None = None
        self._beat: tuple[int, int] | None = None
        """(the heartbeat's age in ms at the last refresh, this clock's time then)."""
        self.epoch_resets = 0
        if load:
            self.refresh()

    # --- the bot's heartbeat ---------------------------------------------------------------

    def heartbeat(self) -> None:
        """The bot is running: stamp the heartbeat (with Redis's clock). Call it from the
        bot's main loop every 10 s; a store opened with ``bot=True`` stamps it on every
        write too. Raises ``RedisUnavailable`` when Redis does not answer."""
        self._require_writable()
        self.conn.eval(
            "expected_write", self._heartbeat, self.keys.all(), [secrets.token_hex(4), "1"]
        )

    def heartbeat_age_s(self, now_ms: int | None = None) -> float:
        """Seconds since a bot last wrote, as of the last refresh plus the time since
        (``math.inf``: never written by a bot, or not read yet)."""
        if self._beat is None:
            return NEVER
        age_ms, read_at = self._beat
        now = self.clock() if now_ms is None else now_ms
        return (age_ms + max(0, now - read_at)) / 1000

    # --- reads (the mirror) --------------------------------------------------------------

    def read_order(self, client_order_id: str) -> ExpectedOrder | None:
        """One order as Redis holds it now (not the mirror)."""
        raw = self.conn.run("expected_refresh", lambda c: c.hget(self.keys.orders, client_order_id))
        return None if raw is None else decode_order(raw, where=self.where)

    # --- refresh -------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        """Bring the mirror up to date; cheap (one round trip) when nothing changed."""
        keys = self.keys

        def head(c: Any) -> list[Any]:
            pipe = c.pipeline(transaction=True)
            pipe.get(keys.seq)
            pipe.get(keys.floor)
            pipe.get(keys.epoch)
            pipe.get(keys.heartbeat)
            pipe.time()
            return list(pipe.execute())

        raw_seq, raw_floor, epoch, raw_beat, server_time = self.conn.run("expected_refresh", head)
        self._saw_heartbeat(raw_beat, server_time)
        last = int(raw_seq or 0)
        floor = int(raw_floor or 0)
        if self._epoch is not None and epoch != self._epoch:
            return self._after_data_loss(epoch)
        if epoch is not None:
            self._epoch = epoch
        seen = self._seen_seq
        if seen >= 0 and last == seen:
            return RefreshResult(frozenset(), frozenset())
        if seen < 0 or floor > seen or last < seen:
            return self._load_full(merge=False)
        return self._load_changes(seen)

    def _saw_heartbeat(self, raw: Any, server_time: Any) -> None:
        if raw is None:
            self._beat = None
            return
        try:
            beat = int(raw)
            seconds, micros = server_time
            server_ms = int(seconds) * 1000 + int(micros) // 1000
        except (TypeError, ValueError):
            raise ExpectedStoreError(f"{self.where}: heartbeat is {raw!r}, not ms") from None
        self._beat = (max(0, server_ms - beat), self.clock())

    def _load_changes(self, seen: int) -> RefreshResult:
        keys = self.keys
        changes = self.conn.run(
            "expected_refresh",
            lambda c: c.zrangebyscore(keys.changes, f"({seen}", "+inf", withscores=True),
        )
        if not changes:
            return RefreshResult(frozenset(), frozenset())
        cids = [m[2:] for m, _ in changes if m.startswith("o:")]
        fields = [m[2:] for m, _ in changes if m.startswith("p:")]

        def fetch(c: Any) -> list[Any]:
            pipe = c.pipeline(transaction=True)
            pipe.hmget(keys.orders, cids) if cids else pipe.echo("")
            pipe.hmget(keys.positions, fields) if fields else pipe.echo("")
            return list(pipe.execute())

        raw_orders, raw_positions = self.conn.run("expected_refresh", fetch)
        orders = [
            (cid, None if raw is None else decode_order(raw, where=self.where))
            for cid, raw in zip(cids, raw_orders or [], strict=False)
        ]
        positions = [
            decode_position(raw, where=self.where)
            for raw in (raw_positions or [])
            if raw is not None
        ]
        result = self._apply_changes(orders, positions)
        self._seen_seq = max(self._seen_seq, int(max(score for _, score in changes)))
        return result

    def _load_full(self, *, merge: bool) -> RefreshResult:
        keys = self.keys

        def everything(c: Any) -> list[Any]:
            pipe = c.pipeline(transaction=True)
            pipe.get(keys.seq)
            pipe.hgetall(keys.orders)
            pipe.hgetall(keys.positions)
            pipe.get(keys.epoch)
            return list(pipe.execute())

        raw_seq, raw_orders, raw_positions, epoch = self.conn.run("expected_refresh", everything)
        orders = {cid: decode_order(raw, where=self.where) for cid, raw in raw_orders.items()}
        positions: dict[PositionKey, ExpectedPosition] = {}
        for raw in raw_positions.values():
            pos = decode_position(raw, where=self.where)
            positions[pos.key] = pos
        result = self._reload(orders, positions, merge=merge)
        self._seen_seq = int(raw_seq or 0)
        self._epoch = epoch
        return result

    def _after_data_loss(self, epoch: str | None) -> RefreshResult:
        self.epoch_resets += 1
        log.warning(
            "EXPECTED_STATE_EPOCH_CHANGED where=%s old=%s new=%s orders_kept=%d "
            "(Redis lost its data: keeping the last known expected state and merging "
            "what Redis holds now; re-record or re-adopt the baseline, see docs/HA.md)",
            self.where,
            self._epoch,
            epoch or "-",
            len(self._orders),
        )
        result = self._load_full(merge=True)
        if epoch is None:
            self._epoch = None
        return result

    # --- writes --------------------------------------------------------------------------

    def record_order(self, order: ExpectedOrder) -> None:
        """The bot placed (or is about to place) this order (a frozen value: stored as given)."""
        self._require_writable()
        stored = order
        reply = self._eval(
            self._record,
            [
                stored.client_order_id,
                encode_order(stored),
                "" if stored.ended_ts_ms is None else stored.ended_ts_ms,
                self.max_orders,
                secrets.token_hex(4),
                self.tombstone_retention,
            ],
        )
        if reply[0] == "full":
            raise ExpectedStoreFull(
                f"{self.where} holds {reply[1]} orders (max_orders={self.max_orders}) and none "
                f"has ended; refusing {stored.client_order_id}"
            )
        if len(reply) > 2 and reply[2]:
            self._orders.pop(reply[2], None)  # evicted to make room
        self._orders[stored.client_order_id] = stored

    def mark_cancel_requested(self, client_order_id: str, now_ms: int) -> None:
        """The bot sent a cancel: from now on it expects the order gone."""

        def change(order: ExpectedOrder) -> ExpectedOrder:
            return book_cancel_requested(order, now_ms)[0]

        self._update_order(client_order_id, change)

    def mark_status(self, client_order_id: str, status: OrderStatus, now_ms: int) -> None:
        """The bot booked a status it saw (a fill, a cancel confirmation, an expiry)."""
        status = OrderStatus(status)

        def change(order: ExpectedOrder) -> ExpectedOrder:
            return book_status(order, status, now_ms)[0]

        self._update_order(client_order_id, change)

    def remove_order(self, client_order_id: str) -> None:
        """Forget an order (no error when it is not there)."""
        self._require_writable()
        self._eval(self._remove, [client_order_id, secrets.token_hex(4), self.tombstone_retention])
        self._orders.pop(client_order_id, None)

    def set_position(
        self,
        symbol: str,
        qty: Decimal,
        now_ms: int,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> None:
        """The position the bot now intends to hold (signed; 0 for flat)."""
        self._require_writable()
        pos = ExpectedPosition(
            symbol=symbol, qty=qty, position_side=PositionSide(position_side), updated_ts_ms=now_ms
        )
        self._eval(
            self._position, [position_field(pos.key), encode_position(pos), secrets.token_hex(4)]
        )
        self._positions[pos.key] = pos

    def evict_expired(self, now_ms: int) -> int:
        """Drop ended orders older than ``terminal_ttl_ms``; returns how many."""
        self._require_writable()
        total = 0
        while True:
            n = int(
                self._eval(
                    self._evict,
                    [
                        now_ms - self.terminal_ttl_ms,
                        secrets.token_hex(4),
                        self.tombstone_retention,
                        1000,
                    ],
                )
            )
            total += n
            if n < 1000:
                break
        for cid in [
            c
            for c, o in self._orders.items()
            if o.ended_ts_ms is not None and o.ended_ts_ms <= now_ms - self.terminal_ttl_ms
        ]:
            del self._orders[cid]
        return total

    # --- internals -----------------------------------------------------------------------

    def _eval(self, script: Any, args: list[Any]) -> Any:
        flag = "1" if self.bot else "0"
        return self.conn.eval("expected_write", script, self.keys.all(), [*args, flag])

    def _update_order(
        self, client_order_id: str, change: Callable[[ExpectedOrder], ExpectedOrder]
    ) -> None:
        self._require_writable()
        for _ in range(CAS_ATTEMPTS):
            raw = self.conn.run(
                "expected_write", lambda c: c.hget(self.keys.orders, client_order_id)
            )
            if raw is None:
                raise UnknownOrder(f"expected store has no order {client_order_id!r}")
            order = change(decode_order(raw, where=self.where))
            reply = self._eval(
                self._update,
                [
                    client_order_id,
                    raw,
                    encode_order(order),
                    "" if order.ended_ts_ms is None else order.ended_ts_ms,
                    secrets.token_hex(4),
                ],
            )
            if reply[0] == "ok":
                self._orders[client_order_id] = order
                return
            if reply[0] == "unknown":
                raise UnknownOrder(f"expected store has no order {client_order_id!r}")
        raise ExpectedStoreError(
            f"{self.where}: order {client_order_id!r} kept changing; gave up after "
            f"{CAS_ATTEMPTS} attempts"
        )

    def _require_writable(self) -> None:
        if self.readonly:
            raise ExpectedStoreError(f"{self.where}: opened read-only")
