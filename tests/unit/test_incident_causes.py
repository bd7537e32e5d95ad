"""Causes from evidence: each cause decided from recorded Binance messages (the corpus).

Every event goes the production way: ``parse_user_event`` on the recorded message, then
``EvidenceBook.record``, then ``EvidenceBook.facts_for`` and ``classify``. Where the corpus
has no message of a kind (self-trade prevention, a GTE_GTC expiry, a manual fill), it is
derived from the closest recorded one by changing the named fields only, and the test says
which.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.binance.parsing import parse_user_event
from grinder.exchange.binance.stream_windows import ReconnectWindow, ReconnectWindows
from grinder.incidents.causes import (
    FAMILY_CAUSES,
    classify,
)
from grinder.incidents.evidence import EvidenceBook
from grinder.incidents.facts import (
    CaseFacts,
)
from grinder.reconcile.engine import TriageFinding
from grinder.reconcile.identity import EXCHANGE_ID_FAMILIES, remediation_client_order_id
from grinder.reconcile.labels import IncidentCause as C
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import Mismatch, MismatchType, OrderStatus, PositionSide
from tests.support.ids import ours

Corpus = Callable[[str], Any]
SEEN = 1_800_000_000_000


def book_of(*messages: Any) -> EvidenceBook:
    book = EvidenceBook()
    for msg in messages:
        book.record(parse_user_event(msg, seen_ts_ms=SEEN))
    return book


def facts(book: EvidenceBook, m: Mismatch, now: int, **kw: Any) -> CaseFacts:
    kw.setdefault("prefix", "grinder_")
    kw.setdefault("strategy_allowlist", frozenset({"d"}))
    kw.setdefault("heartbeat_age_s", 1.0)
    kw.setdefault("max_heartbeat_age_s", 60.0)
    return book.facts_for(m, now, **kw)


def position(symbol: str, side: str, observed: str = "1") -> Mismatch:
    return Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol=symbol,
        position_side=PositionSide(side),
        expected_qty=Decimal(0),
        observed_qty=Decimal(observed),
    )


def divergence(cid: str, symbol: str, observed: str) -> Mismatch:
    return Mismatch(
        type=MismatchType.ORDER_STATUS_DIVERGENCE,
        symbol=symbol,
        client_order_id=cid,
        expected_status="NEW",
        observed_status=observed,
    )


def unexpected(cid: str, symbol: str = "BTCUSDT") -> Mismatch:
    return Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol=symbol,
        client_order_id=cid,
        observed_status="NEW",
    )


def event_time(msg: Any) -> int:
    return int(msg["o"]["T"])


# --- exchange-generated fills: liquidation, ADL, settlement ------------------------------------


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("nautilus_ws_futures_order_update_liquidation.json", C.LIQUIDATION),
        ("nautilus_ws_futures_order_update_liquidation_zero_qty.json", C.LIQUIDATION),
        ("nautilus_rs_futures_order_update_calculated.json", C.LIQUIDATION),
        ("nautilus_rs_futures_order_update_insurance.json", C.LIQUIDATION),
        ("nautilus_ws_futures_order_update_adl.json", C.ADL),
        ("nautilus_ws_futures_order_update_adl_filled.json", C.ADL),
        ("nautilus_rs_futures_order_update_adl.json", C.ADL),
        ("nautilus_ws_futures_order_update_settlement.json", C.SETTLEMENT),
        ("nautilus_rs_futures_order_update_settlement.json", C.SETTLEMENT),
    ],
)
def test_a_position_moved_by_the_exchange_has_that_cause_and_the_fill_as_evidence(
    corpus: Corpus, name: str, cause: C
) -> None:
    msg = corpus(name)
    o = msg["o"]
    book = book_of(msg)
    m = position(o["s"], o["ps"])
    verdict = classify(facts(book, m, event_time(msg) + 3_000))
    assert verdict.cause is cause
    (evidence,) = verdict.evidence
    assert evidence.kind == "fill"
    assert dict(evidence.facts)["client_order_id"] == o["c"]
    assert evidence.ts_ms == event_time(msg)
    assert o["c"] in evidence.summary


def test_an_order_of_ours_expired_by_a_liquidation_or_a_delisting(corpus: Corpus) -> None:
    for reason, cause in (("5", C.LIQUIDATION), ("7", C.SETTLEMENT)):
        msg = copy.deepcopy(corpus("docs_ORDER_TRADE_UPDATE.json"))  # derived: c, x, X, er
        msg["o"].update(c=ours(1), x="EXPIRED", X="EXPIRED", er=reason)
        verdict = classify(facts(book_of(msg), divergence(ours(1), "BTCUSDT", "EXPIRED"), SEEN))
        assert verdict.cause is cause
        assert dict(verdict.evidence[0].facts)["expiry_reason"] == reason


# --- expiries the exchange decides: self-trade prevention, GTE_GTC ------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [("EXPIRED_IN_MATCH", "0"), ("EXPIRED", "1"), ("EXPIRED", "3")]
)
def test_self_trade_prevention(corpus: Corpus, status: str, reason: str) -> None:
    msg = copy.deepcopy(corpus("docs_ORDER_TRADE_UPDATE.json"))  # derived: c, x, X, er
    msg["o"].update(c=ours(2), x="EXPIRED", X=status, er=reason)
    m = divergence(ours(2), "BTCUSDT", status)
    verdict = classify(facts(book_of(msg), m, SEEN))
    assert verdict.cause is C.SELF_TRADE_PREVENTION
    assert verdict.evidence[0].kind == "order_event"
    assert f"X={status}" in verdict.evidence[0].summary
    assert dict(verdict.evidence[0].facts)["stp_mode"] == "EXPIRE_TAKER"  # the doc's V


def test_expired_in_match_learned_without_an_event_is_self_trade_prevention() -> None:
    m = divergence(ours(3), "BTCUSDT", OrderStatus.EXPIRED_IN_MATCH.value)
    verdict = classify(facts(EvidenceBook(), m, SEEN))
    assert verdict.cause is C.SELF_TRADE_PREVENTION
    assert verdict.evidence[0].kind == "order_status"


def test_a_gte_gtc_order_expired_by_its_position_closing(corpus: Corpus) -> None:
    msg = copy.deepcopy(corpus("docs_ORDER_TRADE_UPDATE.json"))  # derived: c, f, x, X, er
    msg["o"].update(c=ours(4), f="GTE_GTC", x="EXPIRED", X="EXPIRED", er="6")
    verdict = classify(facts(book_of(msg), divergence(ours(4), "BTCUSDT", "EXPIRED"), SEEN))
    assert verdict.cause is C.GTE_POSITION_CLOSED
    summary = verdict.evidence[0].summary
    assert "f=GTE_GTC" in summary
    assert "er=6" in summary


def test_an_expiry_reason_sent_as_a_number_reads_the_same(corpus: Corpus) -> None:
    msg = copy.deepcopy(corpus("docs_ORDER_TRADE_UPDATE.json"))
    msg["o"].update(c=ours(5), x="EXPIRED", X="EXPIRED", er=6)
    verdict = classify(facts(book_of(msg), divergence(ours(5), "BTCUSDT", "EXPIRED"), SEEN))
    assert verdict.cause is C.GTE_POSITION_CLOSED


# --- conditional orders: a rejected trigger ------------------------------------------------------


def test_a_conditional_order_whose_trigger_was_rejected(corpus: Corpus) -> None:
    reject = corpus("docs_CONDITIONAL_ORDER_TRIGGER_REJECT.json")
    algo = copy.deepcopy(corpus("nautilus_rs_futures_algo_update_new.json"))  # derived: caid, aid
    algo["o"].update(caid=ours(6, "ETHUSDT"), aid=reject["or"]["i"], s="ETHUSDT")
    verdict = classify(
        facts(book_of(algo, reject), divergence(ours(6, "ETHUSDT"), "ETHUSDT", "EXPIRED"), SEEN)
    )
    assert verdict.cause is C.TRIGGER_REJECTED
    (evidence,) = verdict.evidence
    assert evidence.kind == "trigger_reject"
    assert "FOK order has been rejected" in evidence.summary
    assert dict(evidence.facts)["order_id"] == str(reject["or"]["i"])


def test_a_trigger_reject_of_an_order_never_heard_of_explains_nothing(corpus: Corpus) -> None:
    book = book_of(corpus("docs_CONDITIONAL_ORDER_TRIGGER_REJECT.json"))
    verdict = classify(facts(book, divergence(ours(7), "ETHUSDT", "EXPIRED"), SEEN))
    assert verdict.cause is C.UNKNOWN


def test_an_algo_order_rejected_has_its_reject_message_as_evidence(corpus: Corpus) -> None:
    algo = copy.deepcopy(corpus("nautilus_rs_futures_algo_update_canceled.json"))  # derived: X
    algo["o"].update(caid=ours(8, "BNBUSDT"), X="REJECTED")
    verdict = classify(
        facts(book_of(algo), divergence(ours(8, "BNBUSDT"), "BNBUSDT", "REJECTED"), SEEN)
    )
    assert verdict.cause is C.TRIGGER_REJECTED
    assert "rm=Reduce Only reject" in verdict.evidence[0].summary


# --- who made it: by hand, another strategy, remediation ----------------------------------------


def manual_fill(corpus: Corpus) -> Any:
    msg = copy.deepcopy(corpus("jqcta_ws_ORDER_TRADE_UPDATE_2024_new_limit_web.json"))
    msg["o"].update(x="TRADE", X="FILLED", l=msg["o"]["q"], z=msg["o"]["q"])  # derived: a fill
    return msg


def test_a_position_made_by_hand_in_the_web_app(corpus: Corpus) -> None:
    msg = manual_fill(corpus)
    verdict = classify(facts(book_of(msg), position("BNBUSDT", "BOTH"), event_time(msg) + 3_000))
    assert verdict.cause is C.MANUAL
    assert "web_3c5dm4etfEvSlDpirssF" in verdict.evidence[0].summary


@pytest.mark.parametrize(
    "cid", ["O-12345-test-reduce-only-trade", "grinder_x_ETHUSDT_1_1704067200_1"]
)
def test_a_position_made_by_another_strategy(corpus: Corpus, cid: str) -> None:
    msg = copy.deepcopy(corpus("nautilus_ws_futures_order_update_trade_reduce_only_qty.json"))
    msg["o"]["c"] = cid
    verdict = classify(facts(book_of(msg), position("ETHUSDT", "BOTH"), event_time(msg) + 3_000))
    assert verdict.cause is C.OTHER_STRATEGY
    assert dict(verdict.evidence[0].facts)["client_order_id"] == cid


def test_the_bots_own_fills_are_not_evidence(corpus: Corpus) -> None:
    msg = copy.deepcopy(corpus("nautilus_ws_futures_order_update_trade_reduce_only_qty.json"))
    msg["o"]["c"] = ours(9, "ETHUSDT")
    m = position("ETHUSDT", "BOTH")
    recorded = classify(
        facts(book_of(msg), m, event_time(msg) + 3_000, recorded_by_bot=lambda _c: True)
    )
    assert recorded.cause is C.UNKNOWN
    stopped = classify(
        facts(book_of(msg), m, event_time(msg) + 3_000, heartbeat_age_s=float("inf"))
    )
    assert stopped.cause is C.BOT_STOPPED


def test_an_order_remediation_placed() -> None:
    cid = remediation_client_order_id(
        strategy_id="d", symbol="BTCUSDT", ts_seconds=1_800_000_000, seq=4
    )
    verdict = classify(facts(EvidenceBook(), unexpected(cid), SEEN))
    assert verdict.cause is C.REMEDIATION_ORDER
    assert verdict.evidence[0].kind == "client_order_id"


def test_a_fill_of_a_remediation_order_on_a_position(corpus: Corpus) -> None:
    msg = copy.deepcopy(corpus("nautilus_ws_futures_order_update_trade_reduce_only_qty.json"))
    msg["o"]["c"] = remediation_client_order_id(
        strategy_id="d", symbol="ETHUSDT", ts_seconds=1_800_000_000, seq=1
    )
    verdict = classify(facts(book_of(msg), position("ETHUSDT", "BOTH"), event_time(msg) + 3_000))
    assert verdict.cause is C.REMEDIATION_ORDER


def test_the_most_telling_fill_wins_and_old_fills_do_not_count(corpus: Corpus) -> None:
    liquidation = corpus("nautilus_ws_futures_order_update_liquidation.json")
    manual = copy.deepcopy(liquidation)
    manual["o"].update(c="web_abc", T=event_time(liquidation) + 1_000)
    book = book_of(liquidation, manual)
    m = position("BTCUSDT", "LONG")
    assert classify(facts(book, m, event_time(manual) + 3_000)).cause is C.LIQUIDATION
    # The position last changed long after the liquidation: only the manual fill counts.
    later = event_time(liquidation) + 10 * 60_000
    manual2 = copy.deepcopy(manual)
    manual2["o"].update(T=later)
    book = book_of(liquidation, manual2)
    verdict = classify(facts(book, m, later + 3_000, position_changed_ms=later))
    assert verdict.cause is C.MANUAL


# --- what the service missed: a stream event, a stream gap ---------------------------------------


def triaged(cid: str, ended_ms: int) -> TriageFinding:
    return TriageFinding(cid, TriageOutcome.FOUND_ENDED, OrderStatus.CANCELED, ended_ms)


def test_a_missed_stream_event_found_by_triage() -> None:
    book = EvidenceBook()
    book.record_triage([triaged(ours(10), SEEN - 5_000)], SEEN)
    verdict = classify(facts(book, divergence(ours(10), "BTCUSDT", "CANCELED"), SEEN))
    assert verdict.cause is C.MISSED_STREAM_EVENT
    assert verdict.evidence[0].kind == "triage"
    assert dict(verdict.evidence[0].facts)["status"] == "CANCELED"


def test_an_order_that_ended_while_the_stream_reconnected_is_a_stream_gap() -> None:
    windows = ReconnectWindows()
    windows.went_live(SEEN - 60_000)
    windows.left_live(SEEN - 10_000)
    windows.went_live(SEEN - 2_000)
    book = EvidenceBook()
    book.record_triage([triaged(ours(11), SEEN - 5_000)], SEEN)
    m = divergence(ours(11), "BTCUSDT", "CANCELED")
    verdict = classify(facts(book, m, SEEN, windows=windows.windows()))
    assert verdict.cause is C.STREAM_GAP
    gap, found = verdict.evidence
    assert (gap.kind, found.kind) == ("stream_gap", "triage")
    assert dict(gap.facts) == {
        "window_start_ms": str(SEEN - 10_000),
        "window_end_ms": str(SEEN - 2_000),
    }
    # Outside the window (and past its margin): a missed event, not a gap.
    book.record_triage([triaged(ours(12), SEEN - 12_000)], SEEN)
    other = classify(
        facts(book, divergence(ours(12), "BTCUSDT", "CANCELED"), SEEN, windows=windows.windows())
    )
    assert other.cause is C.MISSED_STREAM_EVENT


def test_the_reconnect_windows_start_only_once_the_stream_was_live() -> None:
    windows = ReconnectWindows()
    windows.left_live(100)  # never live yet: the first snapshot covers this
    assert windows.windows() == ()
    windows.went_live(200)
    windows.left_live(300)
    assert windows.windows() == (ReconnectWindow(300, None),)
    assert windows.windows()[0].covers(10**12)
    windows.went_live(400)
    assert windows.windows() == (ReconnectWindow(300, 400),)


# --- the bot stopped recording; unknown --------------------------------------------------------


def test_an_order_of_ours_while_the_bots_heartbeat_was_stale() -> None:
    m = unexpected(ours(13))
    for age, shown in ((float("inf"), "inf"), (120.0, "120.0")):
        verdict = classify(facts(EvidenceBook(), m, SEEN, heartbeat_age_s=age))
        assert verdict.cause is C.BOT_STOPPED
        assert dict(verdict.evidence[0].facts) == {"heartbeat_age_s": shown, "max_age_s": "60"}
    fresh = classify(facts(EvidenceBook(), m, SEEN, heartbeat_age_s=5.0))
    assert fresh.cause is C.UNKNOWN


def test_an_order_the_exchange_ended_while_the_bot_was_stopped(corpus: Corpus) -> None:
    # The dead-man switch's countdown ends: the exchange cancels the resting order of a bot
    # that stopped recording; the bot still holds it open.
    msg = copy.deepcopy(corpus("docs_ORDER_TRADE_UPDATE.json"))
    msg["o"].update(c=ours(15), x="CANCELED", X="CANCELED")
    m = divergence(ours(15), "BTCUSDT", "CANCELED")
    stopped = classify(facts(book_of(msg), m, SEEN, heartbeat_age_s=120.0))
    assert stopped.cause is C.BOT_STOPPED
    assert [e.kind for e in stopped.evidence] == ["heartbeat", "order_status"]
    assert "still holds it open" in stopped.evidence[1].summary
    live = classify(facts(book_of(msg), m, SEEN, heartbeat_age_s=5.0))
    assert live.cause is C.UNKNOWN  # a live bot's order ended without a reason: not decided


def test_unknown_keeps_what_was_looked_at(corpus: Corpus) -> None:
    msg = copy.deepcopy(corpus("docs_ORDER_TRADE_UPDATE.json"))
    msg["o"].update(c=ours(14), x="CANCELED", X="CANCELED")
    verdict = classify(facts(book_of(msg), divergence(ours(14), "BTCUSDT", "CANCELED"), SEEN))
    assert verdict.cause is C.UNKNOWN
    assert [e.kind for e in verdict.evidence] == ["order_event"]
    assert "X=CANCELED" in verdict.evidence[0].summary
    assert classify(facts(EvidenceBook(), position("SOLUSDT", "BOTH"), SEEN)).evidence == ()


def test_every_exchange_id_family_has_a_cause() -> None:
    assert {stem for stem, _ in EXCHANGE_ID_FAMILIES} == set(FAMILY_CAUSES)
