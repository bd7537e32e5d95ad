"""The cases: drift injected one at a time through the simulator's control API, and what the
service decided, with a verdict for each."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

from grinder.clock import wall_clock_ms
from grinder.demo.harness import DemoHarness
from grinder.demo.options import HAND_POSITION, OTHER, QTY, SYMBOL, CaseResult
from grinder.demo.sim import brief, limit_order, open_ids, position_of
from grinder.reconcile.identity import generate_client_order_id, is_ours
from grinder.reconcile.labels import ResultStatus, SkipReason, TriageOutcome
from grinder.reconcile.routing import ActionKind, route_one
from grinder.reconcile.types import MismatchType


class Demo(DemoHarness):
    """The demo: the components of ``DemoHarness``, then each case in turn (``run``)."""

    # --- the cases ---------------------------------------------------------------------

    async def own_fill(self) -> None:
        bot, t = self._bot(), self.t
        self.heading(
            "0",
            "the bot trades",
            "the market reaches the bot's first BUY level: the bot books its own fill (from its "
            "own stream) and re-places the level. Normal trading must not be reported.",
        )
        price = bot.center - bot.spacing
        await self.inject(
            f"mark {SYMBOL} -> {price}", "POST", "/mark", {"symbol": SYMBOL, "price": str(price)}
        )
        booked = await self.feed.until(lambda _w: bot.fills >= 1, t.case_timeout_s)
        await bot.idle()
        await self.feed.watch(t.settle_s)
        w = self.feed.window
        held = position_of(await self._ctl().state(), SYMBOL)
        agree = "agrees" if held == bot.position else f"DISAGREES ({held})"
        self.line(f"  the bot intends {bot.position} {SYMBOL} now; the exchange {agree}")
        ok = booked and held == bot.position == QTY and w.mismatches() == 0 and len(w.seen) >= 2
        observed = f"no mismatch in {len(w.seen)} runs"
        why = f"watched for {t.settle_s:.2f} s"
        self.record(CaseResult("0", "own fill", "no mismatch", observed, None, "QUIET", ok, why))

    async def orphan(self) -> None:
        bot = self._bot()
        self.heading(
            "a",
            "an orphan order of ours",
            "an order with our prefix that the bot never recorded (as if it crashed between "
            "sending and recording)",
        )
        ts = wall_clock_ms() // 1000
        cid = generate_client_order_id(
            strategy_id="d", symbol=SYMBOL, level_id=9, ts_seconds=ts, seq=1
        )
        price = bot.center - 10 * bot.spacing
        await self.inject(
            f"BUY {QTY} {SYMBOL} @ {price} as {cid}",
            "POST",
            "/orders",
            limit_order("BUY", price, cid),
        )

        def gone(state: Any) -> tuple[bool, str]:
            done = cid not in open_ids(state)
            return done, f"the orphan is {'gone' if done else 'STILL OPEN'}"

        await self.remediate_or_plan(
            ("a", "orphan of ours"),
            MismatchType.ORDER_EXISTS_UNEXPECTED,
            ActionKind.CANCEL,
            cid,
            on_venue=gone,
            untouched="the orphan is still on the exchange",
            why=f"order grace {self.t.order_grace_ms / 1000:.2f} s from the order's creation",
            cleanup=(
                "the orphan is cancelled on the venue, so the next case starts clean",
                "POST",
                "/orders/cancel",
                {"clientOrderId": cid},
            ),
        )

    async def manual_order(self) -> None:
        bot, t = self._bot(), self.t
        self.heading(
            "b",
            "a manual order",
            "someone places an order by hand on the web UI "
            "(client id web_...): not ours, whatever the settings",
        )
        rng = random.Random(self.opts.seed)
        cid = self.manual_cid = "web_" + "".join(
            rng.choice(string.ascii_letters + string.digits) for _ in range(16)
        )
        price = bot.center - 12 * bot.spacing
        before = self.feed.foreign
        await self.inject(
            f"BUY {QTY} {SYMBOL} @ {price} as {cid}",
            "POST",
            "/orders",
            limit_order("BUY", price, cid),
        )
        counted = await self.feed.until(
            lambda w: w.foreign_above(before) is not None, t.case_timeout_s
        )
        await self.feed.watch(t.settle_s)
        w = self.feed.window
        touched = w.mentions(cid)
        still_open = cid in open_ids(await self._ctl().state())
        self.line(
            f"  refused to touch {cid}: {'a mismatch or action (WRONG)' if touched else 'no'} "
            f"mismatch, no action in {len(w.seen)} runs; on the exchange it is "
            f"{'still open' if still_open else 'GONE'}",
            indent=10,
        )
        ok = counted and not touched and still_open
        observed = f"foreign, untouched in {len(w.seen)} runs"
        latency = w.foreign_above(before)
        why = "counted at the next pass, never a candidate"
        expected = "foreign, untouched"
        verdict = "LEFT ALONE"
        self.record(CaseResult("b", "manual order", expected, observed, latency, verdict, ok, why))

    async def hand_position(self) -> None:
        self.heading(
            "c",
            "a position opened by hand",
            f"someone buys {HAND_POSITION} {OTHER} by hand; the bot intends no position there",
        )
        await self.inject(
            f"MARKET BUY {HAND_POSITION} {OTHER}",
            "POST",
            "/positions",
            {"symbol": OTHER, "quantity": str(HAND_POSITION)},
        )

        def flat(state: Any) -> tuple[bool, str]:
            done = position_of(state, OTHER) == 0
            return done, (
                f"{OTHER} is {'flat' if done else 'STILL OPEN'} "
                "(a reduce-only MARKET order placed by GRINDER)"
            )

        await self.remediate_or_plan(
            ("c", "hand position"),
            MismatchType.POSITION_NONZERO_UNEXPECTED,
            ActionKind.FLATTEN,
            OTHER,
            on_venue=flat,
            untouched=f"{OTHER} still holds {HAND_POSITION}",
            why=f"position grace {self.t.position_grace_ms / 1000:.2f} s from the change",
            cleanup=(
                "the position is closed by hand, so the next case starts clean",
                "POST",
                "/positions",
                {"symbol": OTHER, "quantity": str(-HAND_POSITION)},
            ),
        )

    async def remediate_or_plan(
        self,
        case: tuple[str, str],
        kind: MismatchType,
        action: ActionKind,
        subject: str,
        *,
        on_venue: Callable[[Any], tuple[bool, str]],
        untouched: str,
        why: str,
        cleanup: tuple[str, str, str, dict[str, Any]],
    ) -> None:
        """The rest of a case that GRINDER remediates when live and only plans in dry-run.

        Waits for the ``kind`` incident and the ``action`` result about ``subject`` (a client
        order id for a cancel, a symbol for a flatten). Live, ``on_venue`` reads the simulator's
        state: whether the remediation is done there, and what to say. Then the verdict is
        recorded, the drift is undone by hand (``cleanup``, dry-run only) and the incident is
        given a moment to clear, so the next case starts clean."""
        live, t = self.opts.live, self.t
        match = {"cid": subject} if action is ActionKind.CANCEL else {"symbol": subject}
        want = ResultStatus.EXECUTED if live else ResultStatus.PLANNED
        found = await self.feed.until(
            lambda w: (
                w.incident(kind, **match) is not None
                and w.result(want, action, subject) is not None
            ),
            t.case_timeout_s,
        )
        w = self.feed.window
        ok = found
        if live:
            done, text = on_venue(await self._ctl().state())
            self.line(f"  exchange: {text}")
            ok = ok and done
        else:
            self.line(f"  dry-run: nothing was sent, {untouched}")
        expected = f"{kind.value}, {action.value} {want.value}"
        verdict = "REMEDIATED" if live else "DETECTED"
        latency = w.incident(kind, **match)
        key, title = case
        self.record(CaseResult(key, title, expected, expected, latency, verdict, ok, why))
        if not live:
            await self.cleanup(*cleanup)
        await self.feed.until(lambda w: w.cleared(kind, **match) is not None, 3.0)

    async def vanished(self) -> None:
        bot, t = self._bot(), self.t
        assert self.service is not None
        threshold = self.service.config.triage_miss_threshold
        cid = self._bot_cid(2)
        self.heading(
            "d",
            "a bot order vanishes",
            "one of the bot's orders disappears from the "
            "exchange without any event; the bot still believes it open",
        )
        await self.inject(
            f"{cid} vanishes", "DELETE", "/orders", {"clientOrderId": cid, "symbol": SYMBOL}
        )
        kind = MismatchType.ORDER_MISSING_ON_EXCHANGE
        found = await self.feed.until(
            lambda w: (
                w.incident(kind, cid=cid) is not None
                and w.triage(TriageOutcome.NOT_FOUND) >= threshold
                and w.skip(SkipReason.ALERT_ONLY, kind) is not None
            ),
            t.case_timeout_s,
        )
        w = self.feed.window
        misses = w.triage(TriageOutcome.NOT_FOUND)
        self.line(
            f"  triage: absent from the snapshot, so the service asked GET /fapi/v1/order "
            f"{misses}x; reported after {threshold} misses, alert only",
            indent=10,
        )
        ok = found and bot.orders[cid].open
        observed = f"not found x{misses}, {kind.value}"
        why = f"next snapshot within {t.snapshot_s:g} s, then one query a pass"
        expected = f"not found x{threshold}, {kind.value}"
        latency = w.incident(kind, cid=cid)
        self.record(
            CaseResult("d", "order vanishes", expected, observed, latency, "DETECTED", ok, why)
        )

    async def lost_fill(self) -> None:
        bot, t = self._bot(), self.t
        cid = self._bot_cid(-2)
        self.heading(
            "e",
            "a fill whose event is lost",
            "one of the bot's orders fills, but its "
            "ORDER_TRADE_UPDATE never arrives, neither at the bot nor at GRINDER",
        )
        self.line(f"  setup   POST /_sim/stream/suppress {brief({'clientOrderId': cid})}")
        await self._ctl().call("POST", "/stream/suppress", {"clientOrderId": cid})
        booked_before = bot.position
        await self.inject(f"{cid} fills", "POST", "/orders/fill", {"clientOrderId": cid})
        kind = MismatchType.POSITION_QTY_DIVERGENCE
        found = await self.feed.until(
            lambda w: (
                w.triage(TriageOutcome.FOUND_FILLED) >= 1
                and w.incident(kind, symbol=SYMBOL) is not None
            ),
            t.case_timeout_s,
        )
        await self.feed.watch(2 * t.full_pass_s)
        w = self.feed.window
        order_mismatch = w.mentions(cid)
        unbooked = bot.orders[cid].open and bot.position == booked_before
        self.line(
            f"  the order: triage found it FILLED = normal progress, "
            f"{'an order mismatch (WRONG)' if order_mismatch else 'no order mismatch'}"
        )
        self.line(
            f"  the position: the bot still believes the order open and intends "
            f"{bot.position}; the unbooked fill shows as {kind.value} (alert only)",
            indent=10,
        )
        await self._ctl().call("DELETE", "/stream/suppress")
        ok = found and not order_mismatch and unbooked
        observed = f"FOUND_FILLED, {kind.value}"
        why = f"position grace {t.position_grace_ms / 1000:.2f} s"
        expected = f"FOUND_FILLED, {kind.value}"
        latency = w.incident(kind, symbol=SYMBOL)
        self.record(
            CaseResult("e", "fill event lost", expected, observed, latency, "DETECTED", ok, why)
        )

    async def account(self) -> None:
        live, bot = self.opts.live, self._bot()
        assert self.running is not None
        store = self.running.expected.source.store
        self.heading("end", "the account afterwards", "read from the simulator")
        state = await self._ctl().state()
        ours = sorted(c for c in open_ids(state) if is_ours(c))
        unrecorded = [c for c in ours if store.get_order(c) is None]
        manual = next((o for o in state["orders"] if o["clientOrderId"] == self.manual_cid), None)
        other = position_of(state, OTHER)
        writes = int(state["counters"]["writeRequests"]) - bot.writes
        manual_text = "MISSING" if manual is None else f"{manual['status']}, untouched"
        self.line(f"  open orders of ours: {len(ours)}, not recorded by the bot: {len(unrecorded)}")
        self.line(f"  manual order {self.manual_cid}: {manual_text}")
        self.line(
            f"  positions: {OTHER} {other}, {SYMBOL} {position_of(state, SYMBOL)} "
            f"(the bot's book: {bot.position})"
        )
        self.line(f"  exchange writes by GRINDER: {writes} (the bot's own: {bot.writes})")
        self.feed.open()  # print what is pending: the last run report is what stands now
        last = self.feed.last.mismatches if self.feed.last else []
        standing = sorted({m.type for m in last})
        # What stands must be what GRINDER leaves to a human (routed to no action).
        acted_on = [m for m in last if isinstance(route_one(m), ActionKind)]
        left = sorted({m.type.value for m in last} - {m.type.value for m in acted_on})
        routed = sorted({m.type.value for m in acted_on})
        shown = f"left to an operator: {', '.join(left) or 'none'}"
        if routed:
            shown += f"; routed to an action{' (planned)' if not live else ''}: {', '.join(routed)}"
        self.line(f"  mismatches that stand: {len(last)} ({shown})")
        if live:
            ok = (
                not unrecorded
                and manual is not None
                and other == 0
                and writes == 2
                and not acted_on
            )
            expected = "orphan gone, manual kept, flat; alert-only left"
            observed = (
                f"orphan gone, manual kept, {OTHER} flat, {writes} writes; "
                f"{len(last)} alert-only left"
            )
            verdict = "REMEDIATED"
        else:
            ok = manual is not None and writes == 0
            expected = "0 writes by GRINDER"
            observed = "0 writes by GRINDER, manual order open"
            verdict = "UNTOUCHED"
        instead = (
            f"unrecorded {len(unrecorded)}, manual {manual_text}, {OTHER} {other}, {writes} writes,"
            f" standing {', '.join(t.value for t in standing) or 'none'}"
        )
        self.record(CaseResult("end", "account", expected, observed, None, verdict, ok), instead)
        self.line(
            "  the bot stops: for each order it believes open, it records the cancel, "
            "then sends it",
            indent=10,
        )
        self.feed.open()
        await bot.stop(cancel_orders=True)

    async def run(self) -> None:
        await self.start()
        for case in (
            self.own_fill,
            self.orphan,
            self.manual_order,
            self.hand_position,
            self.vanished,
            self.lost_fill,
            self.account,
        ):
            await case()
