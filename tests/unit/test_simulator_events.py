"""Stream events in Binance's shapes (against the corpus), and the stream hub:
listenKey lifetime, event allow-lists, suppression."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.errors import BinanceError
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.userstream import parse_events
from grinder.exchange.simulator.validation import parse_new_order

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "exchange-corpus" / "binance-usdm"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"Binance wire corpus not found at {CORPUS}"
)


def corpus(name: str) -> Any:
    data = json.loads((CORPUS / name).read_text())
    return data["data"] if isinstance(data, dict) and "data" in data else data


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def shape_diff(
    ours: Any, theirs: Any, path: str = "", absent_ok: frozenset[str] = frozenset()
) -> list[str]:
    """Differences of keys and JSON types between two payloads (first list items compared)."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out = []
        for key in theirs:
            if key not in ours:
                if key not in absent_ok:
                    out.append(f"{path}.{key} missing")
                continue
            out += shape_diff(ours[key], theirs[key], f"{path}.{key}", absent_ok)
        out += [f"{path}.{key} extra" for key in ours if key not in theirs]
        return out
    if isinstance(theirs, list) and isinstance(ours, list):
        if theirs and ours:
            return shape_diff(ours[0], theirs[0], f"{path}[0]", absent_ok)
        return []
    if kind(ours) != kind(theirs):
        return [f"{path}: {kind(ours)} != {kind(theirs)}"]
    return []


def make_sim(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"walk_frozen": True, "symbols": ["BTCUSDT", "ETHUSDT"]}
    values.update(overrides)
    return Simulator(SimConfig(**values), ManualClock())


def place(sim: Simulator, **values: Any) -> None:
    params = Params((k, str(v)) for k, v in values.items())
    req = parse_new_order(
        params, sim.specs, dual=sim.account.dual, mark_of=sim.book.mark, now_ms=sim.now_ms()
    )
    sim.account.place(req)


def of_kind(sim: Simulator, name: str) -> list[dict[str, Any]]:
    return [e for e in sim.hub.recent if e["e"] == name]


@needs_corpus
def test_order_trade_update_has_the_docs_shape() -> None:
    sim = make_sim()
    place(sim, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    new, trade = of_kind(sim, "ORDER_TRADE_UPDATE")
    docs = corpus("docs_ORDER_TRADE_UPDATE.json")
    trailing_only = frozenset({"AP", "cr"})
    assert shape_diff(new, docs, absent_ok=trailing_only) == []
    assert shape_diff(trade, docs, absent_ok=trailing_only) == []
    partial = corpus("nautilus_rs_futures_order_update_trade_partial.json")
    extra = [".o.pm extra", ".o.gtd extra", ".o.er extra"]  # newer fields than that fixture
    assert shape_diff(trade, partial, absent_ok=trailing_only) == extra


@needs_corpus
def test_order_trade_update_numbers_are_written_like_the_real_captures() -> None:
    sim = make_sim()
    place(
        sim,
        symbol="ETHUSDT",
        side="SELL",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.050",
        price="3300.00",
    )
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


@needs_corpus
def test_account_update_has_the_docs_shape() -> None:
    sim = make_sim()
    place(sim, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.010")
    (update,) = of_kind(sim, "ACCOUNT_UPDATE")
    assert shape_diff(update, corpus("docs_ACCOUNT_UPDATE.json")) == []
    row = update["a"]["P"][0]
    assert (row["pa"], row["ps"], row["mt"]) == ("-0.01", "BOTH", "cross")


@needs_corpus
def test_trade_lite_has_the_docs_shape() -> None:
    sim = make_sim()
    place(sim, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    (lite,) = of_kind(sim, "TRADE_LITE")
    assert shape_diff(lite, corpus("docs_TRADE_LITE.json")) == []


@needs_corpus
def test_algo_updates_have_the_real_shapes_before_and_after_trigger() -> None:
    from grinder.exchange.simulator.algo import parse_algo_order

    sim = make_sim()
    params = Params.of(
        algoType="CONDITIONAL",
        symbol="ETHUSDT",
        side="BUY",
        type="STOP_MARKET",
        quantity="0.050",
        triggerPrice="3300.00",
    )
    req = parse_algo_order(params, sim.specs, dual=False, mark_of=sim.book.mark, now_ms=0)
    sim.algos.place(req)
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


@needs_corpus
def test_listen_key_expired_has_the_docs_shape() -> None:
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
    with pytest.raises(BinanceError) as info:
        sim.hub.keepalive(None)
    assert info.value.code == -1125
    assert sim.hub.create_key() != key


def test_suppression_drops_the_next_n_events_or_those_of_one_client_id() -> None:
    sim = make_sim()
    sim.hub.suppress(count=1, event_types=["ORDER_TRADE_UPDATE"])
    place(
        sim,
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.010",
        price="64000.0",
        newClientOrderId="first",
    )
    place(
        sim,
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.010",
        price="64000.0",
        newClientOrderId="second",
    )
    sent = [e["o"]["c"] for e in of_kind(sim, "ORDER_TRADE_UPDATE")]
    assert sent == ["second"]
    assert sim.hub.suppressed == 1
    sim.hub.suppress(count=None, client_order_id="mine")
    place(
        sim, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="mine"
    )
    assert [e["o"]["c"] for e in of_kind(sim, "ORDER_TRADE_UPDATE")] == ["second"]
    assert len(of_kind(sim, "ACCOUNT_UPDATE")) == 1  # not about a client id: still sent
    sim.hub.clear_suppression()
    place(
        sim, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010", newClientOrderId="mine"
    )
    assert [e["o"]["c"] for e in of_kind(sim, "ORDER_TRADE_UPDATE")][-1] == "mine"
