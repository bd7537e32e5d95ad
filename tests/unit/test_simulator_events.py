"""Stream events in Binance's shapes (against the corpus), and the stream hub:
listenKey lifetime, event allow-lists, suppression."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.userstream import parse_events
from grinder.exchange.simulator.validation import parse_new_order

# The Binance wire corpus: the ``corpus`` and ``shape_diff`` fixtures of tests/conftest.py (a test
# using them is skipped where the corpus is not checked out).
ShapeDiff = Callable[..., list[str]]


def make_sim(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"walk_frozen": True, "symbols": ["BTCUSDT", "ETHUSDT"]}
    values.update(overrides)
    return Simulator(SimConfig(**values), ManualClock())


def place(sim: Simulator, **values: Any) -> None:
    """A new order with these parameters, by default a GTC LIMIT BUY of BTCUSDT."""
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"}
    base.update(values)
    if base["type"] == "LIMIT":
        base.setdefault("timeInForce", "GTC")
    params = Params((k, str(v)) for k, v in base.items())
    req = parse_new_order(
        params, sim.specs, dual=sim.account.dual, mark_of=sim.book.mark, now_ms=sim.now_ms()
    )
    sim.account.place(req)


def of_kind(sim: Simulator, name: str) -> list[dict[str, Any]]:
    return [e for e in sim.hub.recent if e["e"] == name]


def test_order_trade_update_has_the_docs_shape(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    sim = make_sim()
    place(sim, type="MARKET", quantity="0.010")
    new, trade = of_kind(sim, "ORDER_TRADE_UPDATE")
    docs = corpus("docs_ORDER_TRADE_UPDATE.json")
    trailing_only = frozenset({"AP", "cr"})
    assert shape_diff(new, docs, absent_ok=trailing_only) == []
    assert shape_diff(trade, docs, absent_ok=trailing_only) == []
    partial = corpus("nautilus_rs_futures_order_update_trade_partial.json")
    extra = [".o.pm extra", ".o.gtd extra", ".o.er extra"]  # newer fields than that fixture
    assert shape_diff(trade, partial, absent_ok=trailing_only) == extra


def test_order_trade_update_numbers_are_written_like_the_real_captures(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    sim = make_sim()
    place(sim, symbol="ETHUSDT", side="SELL", quantity="0.050", price="3300.00")
    body = of_kind(sim, "ORDER_TRADE_UPDATE")[0]["o"]
    real = corpus("jqcta_ws_ORDER_TRADE_UPDATE_2024_new_limit_web.json")["o"]
    assert (body["q"], body["p"], body["ap"], body["l"], body["z"], body["L"]) == (
        "0.05",
        "3300.00",
        "0",
        "0",
        "0",
        "0",
    )
    assert shape_diff(body, real) == [".er extra"]


def test_account_update_has_the_docs_shape(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    sim = make_sim()
    place(sim, side="SELL", type="MARKET", quantity="0.010")
    (update,) = of_kind(sim, "ACCOUNT_UPDATE")
    assert shape_diff(update, corpus("docs_ACCOUNT_UPDATE.json")) == []
    row = update["a"]["P"][0]
    assert (row["pa"], row["ps"], row["mt"]) == ("-0.01", "BOTH", "cross")


def test_trade_lite_has_the_docs_shape(corpus: Callable[[str], Any], shape_diff: ShapeDiff) -> None:
    sim = make_sim()
    place(sim, type="MARKET", quantity="0.010")
    (lite,) = of_kind(sim, "TRADE_LITE")
    assert shape_diff(lite, corpus("docs_TRADE_LITE.json")) == []


def test_algo_updates_have_the_real_shapes_before_and_after_trigger(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    sim = make_sim()
    _stop_market(sim, side="BUY", triggerPrice="3300.00")
    sim.book.set_mark("ETHUSDT", Decimal("3300.00"))
    sim.match("ETHUSDT")
    new, triggering, triggered, finished = of_kind(sim, "ALGO_UPDATE")
    assert shape_diff(new, corpus("nautilus_ws_futures_algo_update_triggering.json")) == []
    assert shape_diff(triggering, corpus("nautilus_ws_futures_algo_update_triggering.json")) == []
    assert shape_diff(triggered, corpus("nautilus_ws_futures_algo_update_triggered.json")) == []
    assert shape_diff(finished, corpus("nautilus_ws_futures_algo_update_finished.json")) == []
    real = corpus("jqcta_ws_algo_stop_market_lifecycle_2025_sequence.json")
    assert [e["e"] for e in sim.hub.recent] == [
        *[e["e"] for e in real][:2],
        "ORDER_TRADE_UPDATE",
        "TRADE_LITE",
        "ORDER_TRADE_UPDATE",
        "ACCOUNT_UPDATE",
        "ALGO_UPDATE",
        "ALGO_UPDATE",
    ]
    child_new = of_kind(sim, "ORDER_TRADE_UPDATE")[0]
    assert shape_diff(child_new, real[2]) == []


def _stop_market(sim: Simulator, **given: str) -> Any:
    """A STOP_MARKET algo order on ETHUSDT, placed: SELL 0.050 at trigger 3000 unless given."""
    from grinder.exchange.simulator.algo import parse_algo_order

    fields = {
        "algoType": "CONDITIONAL",
        "symbol": "ETHUSDT",
        "side": "SELL",
        "type": "STOP_MARKET",
        "quantity": "0.050",
        "triggerPrice": "3000.00",
        **given,
    }
    params = Params.of(**fields)
    req = parse_algo_order(params, sim.specs, dual=False, mark_of=sim.book.mark, now_ms=0)
    return sim.algos.place(req)


def test_algo_update_canceled_has_the_shape_of_the_real_one(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    sim = make_sim()
    algo = _stop_market(sim)
    sim.algos.cancel(algo)
    canceled = of_kind(sim, "ALGO_UPDATE")[-1]
    assert canceled["o"]["X"] == "CANCELED"
    # Before a trigger the real (testnet) events carry no ap/aq/act (see the TRIGGERING
    # capture); the docs-derived CANCELED sample shows them zeroed, and an "rm".
    docs_like = corpus("nautilus_rs_futures_algo_update_canceled.json")
    assert docs_like["o"]["X"] == "CANCELED"
    not_before_trigger = frozenset({"ap", "aq", "act", "rm"})
    assert shape_diff(canceled, docs_like, absent_ok=not_before_trigger) == []
    triggering = corpus("nautilus_ws_futures_algo_update_triggering.json")
    assert shape_diff(canceled, triggering) == []


def test_a_rejected_trigger_sends_the_docs_reject_event(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    sim = make_sim()
    _stop_market(sim, reduceOnly="true")  # nothing to reduce: the child order is refused
    sim.book.set_mark("ETHUSDT", Decimal("3000.00"))
    sim.match("ETHUSDT")
    (reject,) = of_kind(sim, "CONDITIONAL_ORDER_TRIGGER_REJECT")
    assert shape_diff(reject, corpus("docs_CONDITIONAL_ORDER_TRIGGER_REJECT.json")) == []
    assert of_kind(sim, "ALGO_UPDATE")[-1]["o"]["X"] == "REJECTED"


def test_listen_key_expired_has_the_docs_shape(
    corpus: Callable[[str], Any], shape_diff: ShapeDiff
) -> None:
    from grinder.exchange.simulator.events import listen_key_expired

    assert shape_diff(listen_key_expired("k", 1), corpus("docs_listenKeyExpired.json")) == []


def test_events_parameter_accepts_slashes_commas_or_nothing() -> None:
    assert parse_events(None) is None
    assert parse_events("") is None
    assert parse_events("ORDER_TRADE_UPDATE/ACCOUNT_UPDATE") == {
        "ORDER_TRADE_UPDATE",
        "ACCOUNT_UPDATE",
    }
    assert parse_events("ORDER_TRADE_UPDATE,listenKeyExpired") == {
        "ORDER_TRADE_UPDATE",
        "listenKeyExpired",
    }


def test_listen_key_lifetime_keepalive_and_reuse() -> None:
    sim = make_sim(listen_key_validity_ms=60_000)
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    key = sim.hub.create_key()
    assert len(key) == 64
    clock.advance(30_000)
    assert sim.hub.create_key() == key  # an active key is returned again and extended
    clock.advance(59_000)
    assert sim.hub.keepalive(None) == key
    clock.advance(59_000)
    assert sim.hub.valid(key)
    clock.advance(1_000)
    assert not sim.hub.valid(key)
    with pytest.raises(ErrorReply) as info:
        sim.hub.keepalive(None)
    assert info.value.code == -1125
    assert sim.hub.create_key() != key


def test_suppression_drops_the_next_n_events_or_those_of_one_client_id() -> None:
    sim = make_sim()
    sim.hub.suppress(count=1, event_types=["ORDER_TRADE_UPDATE"])
    for cid in ("first", "second"):
        place(sim, quantity="0.010", price="64000.0", newClientOrderId=cid)
    sent = [e["o"]["c"] for e in of_kind(sim, "ORDER_TRADE_UPDATE")]
    assert sent == ["second"]
    assert sim.hub.suppressed == 1
    sim.hub.suppress(count=None, client_order_id="mine")
    place(sim, type="MARKET", quantity="0.010", newClientOrderId="mine")
    assert [e["o"]["c"] for e in of_kind(sim, "ORDER_TRADE_UPDATE")] == ["second"]
    assert len(of_kind(sim, "ACCOUNT_UPDATE")) == 1  # not about a client id: still sent
    sim.hub.clear_suppression()
    place(sim, type="MARKET", quantity="0.010", newClientOrderId="mine")
    assert [e["o"]["c"] for e in of_kind(sim, "ORDER_TRADE_UPDATE")][-1] == "mine"
