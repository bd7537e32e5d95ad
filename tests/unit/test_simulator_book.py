"""The simulator's market: a seeded mark-price walk, freezing, and tick/filter rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from grinder.exchange.simulator.book import MarketBook
from grinder.exchange.simulator.symbols import CATALOG, DEFAULT_SYMBOLS, resolve_symbols


def walk(seed: int, steps: int = 50) -> list[dict[str, str]]:
    book = MarketBook(resolve_symbols(None), seed=seed, volatility=0.001)
    out = []
    for _ in range(steps):
        book.step()
        out.append(book.snapshot())
    return out


def test_same_seed_gives_the_same_path() -> None:
    assert walk(7) == walk(7)


def test_different_seeds_give_different_paths() -> None:
    assert walk(7) != walk(8)


def test_every_mark_stays_on_the_tick_grid_and_inside_the_price_filter() -> None:
    book = MarketBook(resolve_symbols(None), seed=3, volatility=0.01)
    for _ in range(200):
        book.step()
    for name in book.symbols:
        spec = book.spec(name)
        mark = book.mark(name)
        assert mark % spec.tick_size == 0
        assert spec.min_price <= mark <= spec.max_price


def test_a_frozen_walk_does_not_move_but_keeps_other_symbols_paths() -> None:
    specs = resolve_symbols(["BTCUSDT", "ETHUSDT"])
    free = MarketBook(specs, seed=5, volatility=0.001)
    half = MarketBook(specs, seed=5, volatility=0.001)
    half.freeze(True, "BTCUSDT")
    for _ in range(10):
        free.step()
        half.step()
    assert half.mark("BTCUSDT") == CATALOG["BTCUSDT"].initial_mark
    assert half.mark("ETHUSDT") == free.mark("ETHUSDT")


def test_a_globally_frozen_walk_reports_no_change_unless_forced() -> None:
    book = MarketBook(resolve_symbols(["BTCUSDT"]), seed=1, volatility=0.01, frozen=True)
    assert book.step() == []
    assert book.step(force=True) == ["BTCUSDT"]


def test_set_mark_rounds_to_the_tick_and_clamps_to_the_filter() -> None:
    book = MarketBook(resolve_symbols(["BTCUSDT"]), seed=1)
    assert book.set_mark("BTCUSDT", Decimal("65000.04")) == Decimal("65000.00")
    assert book.set_mark("BTCUSDT", Decimal("65000.06")) == Decimal("65000.10")
    assert book.set_mark("BTCUSDT", Decimal("1")) == Decimal("402.00")


def test_reset_returns_to_the_starting_marks_and_path() -> None:
    book = MarketBook(resolve_symbols(["ETHUSDT"]), seed=9, volatility=0.01)
    first = [book.step() and book.mark("ETHUSDT") for _ in range(5)]
    book.reset()
    assert book.mark("ETHUSDT") == CATALOG["ETHUSDT"].initial_mark
    again = [book.step() and book.mark("ETHUSDT") for _ in range(5)]
    assert first == again


def test_the_catalog_has_the_required_symbols_and_btc_eth_filters_from_the_corpus() -> None:
    for name in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "1000PEPEUSDT"):
        assert name in DEFAULT_SYMBOLS
    assert len(DEFAULT_SYMBOLS) >= 20
    btc = CATALOG["BTCUSDT"]
    assert (btc.tick_size, btc.step_size, btc.min_notional) == (
        Decimal("0.10"),
        Decimal("0.001"),
        Decimal("10"),
    )
    assert str(CATALOG["ETHUSDT"].min_price) == "28.23"


def test_unknown_symbols_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown simulator symbol"):
        resolve_symbols(["NOPEUSDT"])


def test_every_catalog_symbol_exchange_info_parses_with_the_client_parser() -> None:
    from grinder.exchange.binance.parsing import parse_exchange_info
    from grinder.exchange.simulator.symbols import CATALOG, exchange_info

    doc = exchange_info(list(CATALOG.values()), 1_800_000_000_000, [])
    filters = parse_exchange_info(doc)
    assert sorted(filters) == sorted(CATALOG)
    numbers = [
        v for s in doc["symbols"] for f in s["filters"] for k, v in f.items() if k != "filterType"
    ]
    assert not [n for n in numbers if isinstance(n, str) and "E" in n.upper()]
