"""Binance USDⓈ-M wire parsing and error mapping.

* every JSON file of the shared wire corpus goes through the parser its name calls for;
* specific values for a representative set (hedge signs, ids above 2**53,
  liquidation ids, algo status mapping, ACCOUNT_UPDATE rows, exchangeInfo filters);
* garbled messages all raise ``WireFormatError`` with a one-line message;
* hypothesis mutations of real events either parse or raise ``WireFormatError``;
* ``error_from_response`` for every code of ``error_codes.json`` and the HTTP statuses.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grinder.exchange.binance.error_codes import ERROR_SPECS
from grinder.exchange.binance.errors import (
    AlgoEndpointRequired,
    AuthError,
    BinanceError,
    DuplicateClientOrderId,
    FilterRejected,
    InsufficientMargin,
    InvalidClientOrderId,
    InvalidRequest,
    IpBanned,
    ListenKeyInvalid,
    MinNotionalRejected,
    NoChangeNeeded,
    OrderAlreadyGone,
    OrderNotFound,
    OrderRejected,
    PositionInsufficient,
    PositionSideMismatch,
    RateLimited,
    ReduceOnlyRejected,
    RequestRejected,
    ServerError,
    ServerOverloaded,
    TimestampError,
    UnknownOutcome,
    WafRejected,
    error_from_response,
)
from grinder.exchange.binance.parsing import (
    AccountUpdate,
    AlgoUpdate,
    ListenKeyExpired,
    OrderUpdate,
    OtherEvent,
    SymbolFilters,
    UserEvent,
    WireFormatError,
    parse_algo_order,
    parse_algo_orders,
    parse_error,
    parse_exchange_info,
    parse_order,
    parse_orders,
    parse_position,
    parse_positions,
    parse_user_event,
)
from grinder.exchange.port import ExchangeError, TransientExchangeError
from grinder.reconcile.identity import generate_client_order_id, is_ours
from grinder.reconcile.types import (
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    PositionSide,
    Side,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "exchange-corpus" / "binance-usdm"
SKIP_REASON = f"Binance wire corpus not found at {CORPUS}"
SEEN = 1_700_000_000_000
BIG_ID = 8389766049535966587  # a real order id, above 2**53


def _corpus_names() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-corpus")]
    return sorted(p.name for p in CORPUS.glob("*.json"))


def _corpus_file(name: str) -> Path:
    if not CORPUS.is_dir():
        pytest.skip(SKIP_REASON)
    return CORPUS / name


def _load(name: str) -> Any:
    return json.loads(_corpus_file(name).read_text(encoding="utf-8"))


def _raw(name: str) -> bytes:
    return _corpus_file(name).read_bytes()


# --- invariants of a fully parsed object --------------------------------------------------------


def _check_order(order: ObservedOrder, *, is_algo: bool) -> None:
    assert isinstance(order, ObservedOrder)
    assert isinstance(order.client_order_id, str)
    assert order.client_order_id
    assert isinstance(order.symbol, str)
    assert order.symbol
    assert isinstance(order.side, Side)
    assert isinstance(order.status, OrderStatus)
    assert isinstance(order.position_side, PositionSide)
    for value in (order.qty, order.executed_qty):
        assert type(value) is Decimal
        assert value.is_finite()
    assert order.price is None or (type(order.price) is Decimal and order.price.is_finite())
    assert type(order.order_id) is int
    assert isinstance(order.order_type, str)
    assert type(order.created_ts_ms) is int
    assert type(order.update_ts_ms) is int
    assert type(order.reduce_only) is bool
    assert order.is_algo is is_algo


def _check_position(position: ObservedPosition) -> None:
    assert isinstance(position, ObservedPosition)
    assert isinstance(position.symbol, str)
    assert position.symbol
    assert type(position.qty) is Decimal
    assert position.qty.is_finite()
    assert isinstance(position.position_side, PositionSide)
    if position.position_side is PositionSide.LONG:
        assert position.qty >= 0
    if position.position_side is PositionSide.SHORT:
        assert position.qty <= 0
    assert type(position.entry_price) is Decimal
    assert position.mark_price is None or type(position.mark_price) is Decimal
    assert type(position.update_ts_ms) is int


def _check_event(event: UserEvent) -> None:
    if isinstance(event, OrderUpdate):
        _check_order(event.order, is_algo=False)
        assert isinstance(event.execution_type, str)
        assert type(event.event_ts_ms) is int
        assert type(event.last_filled_qty) is Decimal
        assert event.parent_algo_id is None or type(event.parent_algo_id) is int
    elif isinstance(event, AlgoUpdate):
        _check_order(event.order, is_algo=True)
        assert event.order.order_id == event.algo_id
        assert event.actual_order_id is None or type(event.actual_order_id) is int
    elif isinstance(event, AccountUpdate):
        assert isinstance(event.reason, str)
        assert isinstance(event.positions, tuple)
        for position in event.positions:
            _check_position(position)
    elif isinstance(event, ListenKeyExpired):
        assert type(event.event_ts_ms) is int
    else:
        assert isinstance(event, OtherEvent)
        assert isinstance(event.event_type, str)
        assert event.event_ts_ms is None or type(event.event_ts_ms) is int


def _check_filters(filters: SymbolFilters) -> None:
    for value in (filters.tick_size, filters.step_size, filters.min_qty):
        assert type(value) is Decimal
        assert value > 0


# --- every corpus file through the right parser -------------------------------------------------


def _user_event(expected: type[Any]) -> Callable[[str, Any], None]:
    def check(name: str, doc: Any) -> None:
        # Both the decoded object and the raw file bytes must parse the same way.
        event = parse_user_event(doc, seen_ts_ms=SEEN)
        assert isinstance(event, expected)
        _check_event(event)
        assert parse_user_event(_raw(name), seen_ts_ms=SEEN) == event

    return check


def _event_sequence(name: str, doc: Any) -> None:
    assert isinstance(doc, list)
    for item in doc:
        _check_event(parse_user_event(item, seen_ts_ms=SEEN))


def _one_or_many(
    doc: Any,
    many: Callable[..., list[ObservedOrder]],
    one: Callable[..., ObservedOrder],
) -> list[ObservedOrder]:
    """A list body through the list parser, an object through the single-order parser."""
    return many(doc, seen_ts_ms=SEEN) if isinstance(doc, list) else [one(doc, seen_ts_ms=SEEN)]


def _orders(name: str, doc: Any) -> None:
    orders = _one_or_many(doc, parse_orders, parse_order)
    assert orders
    for order in orders:
        _check_order(order, is_algo=False)
        assert order.seen_ts_ms == SEEN


def _batch_orders(name: str, doc: Any) -> None:
    assert isinstance(doc, list)
    for item in doc:
        if "code" in item:
            code, msg = parse_error(item)
            assert isinstance(error_from_response(None, item, None), BinanceError)
            assert code < 0
            assert msg
        else:
            _check_order(parse_order(item, seen_ts_ms=SEEN), is_algo=False)


def _algo_orders(name: str, doc: Any) -> None:
    orders = _one_or_many(doc, parse_algo_orders, parse_algo_order)
    assert orders
    for order in orders:
        _check_order(order, is_algo=True)


def _positions(name: str, doc: Any) -> None:
    positions = parse_positions(doc, seen_ts_ms=SEEN)
    assert positions
    for position in positions:
        _check_position(position)
        assert position.seen_ts_ms == SEEN


def _exchange_info(name: str, doc: Any) -> None:
    infos = parse_exchange_info(doc)
    assert infos
    for symbol, filters in infos.items():
        assert filters.symbol == symbol
        _check_filters(filters)


def _account(name: str, doc: Any) -> None:
    # Account bodies are not used by the reconciler; their position rows share
    # positionRisk's fields, so they go through the same parser.
    assert isinstance(doc, dict)
    assert isinstance(doc["assets"], list)
    for position in parse_positions(doc["positions"], seen_ts_ms=SEEN, kind="account"):
        _check_position(position)


def _listen_key(name: str, doc: Any) -> None:
    assert isinstance(doc, dict)
    if "DELETE" in name:
        assert doc == {}
    else:
        assert isinstance(doc["listenKey"], str)
        assert doc["listenKey"]


def _trades(name: str, doc: Any) -> None:
    assert isinstance(doc, list)
    for trade in doc:
        assert isinstance(trade["symbol"], str)
        assert Decimal(trade["price"]) > 0
        assert Decimal(trade["qty"]) > 0
        assert int(trade["orderId"]) > 0


def _symbol_config(name: str, doc: Any) -> None:
    assert isinstance(doc, list)
    for row in doc:
        assert isinstance(row["symbol"], str)
        assert int(row["leverage"]) > 0


def _ticker(name: str, doc: Any) -> None:
    assert isinstance(doc, dict)
    assert isinstance(doc["symbol"], str)
    assert Decimal(doc["price"]) > 0


def _position_mode(name: str, doc: Any) -> None:
    assert isinstance(doc, dict)
    assert isinstance(doc["dualSidePosition"], bool)


def _error_codes_shape(name: str, doc: Any) -> None:
    assert isinstance(doc, list)
    for entry in doc:
        assert isinstance(entry["code"], int)
        assert isinstance(entry["name"], str)
        assert isinstance(entry["msg"], str)


def _limits_shape(name: str, doc: Any) -> None:
    assert isinstance(doc, dict)
    assert isinstance(doc["request_weights"], list)


# First matching rule wins; order matters ("account_orders" before "account").
RULES: list[tuple[str, Callable[[str, Any], None]]] = [
    (r"^error_codes\.json$", _error_codes_shape),
    (r"^limits\.json$", _limits_shape),
    (r"lifecycle.*sequence", _event_sequence),
    (r"ORDER_TRADE_UPDATE|order_update", _user_event(OrderUpdate)),
    (r"ALGO_UPDATE|algo_update", _user_event(AlgoUpdate)),
    (r"ACCOUNT_UPDATE|account_update", _user_event(AccountUpdate)),
    (r"listenKeyExpired", _user_event(ListenKeyExpired)),
    (
        r"TRADE_LITE|trade_lite|MARGIN_CALL|ACCOUNT_CONFIG_UPDATE|CONDITIONAL_ORDER_TRIGGER",
        _user_event(OtherEvent),
    ),
    (r"listenKey", _listen_key),
    (r"open_algo_orders|algo_order_response", _algo_orders),
    (r"batchOrders", _batch_orders),
    (r"positionRisk|position_risk|positions_(hedge|one_way)", _positions),
    (r"exchange_info", _exchange_info),
    (r"openOrders?|allOrders|account_orders|fapi_v1_order|order_response", _orders),
    (r"userTrades|account_trades", _trades),
    (r"symbolConfig", _symbol_config),
    (r"ticker_price", _ticker),
    (r"position_side_dual", _position_mode),
    (r"account", _account),
]


@pytest.mark.parametrize("name", _corpus_names())
def test_corpus_file_parses(name: str) -> None:
    doc = _load(name)
    for pattern, check in RULES:
        if re.search(pattern, name):
            check(name, doc)
            return
    pytest.fail(f"no parser rule for corpus file {name}: add one to RULES")


# --- specific values ----------------------------------------------------------------------------


def test_position_risk_v3_hedge_signs_and_mark_price() -> None:
    rows = parse_positions(_load("docs_GET_fapi_v3_positionRisk_hedge.json"), seen_ts_ms=SEEN)
    long, short = rows
    assert (long.symbol, long.position_side, long.qty) == ("ADAUSDT", PositionSide.LONG, 30)
    assert long.mark_price == Decimal("0.41047590")
    assert long.entry_price == Decimal("0.385")
    assert long.update_ts_ms == 1720736417660
    assert (short.symbol, short.position_side) == ("COMPUSDT", PositionSide.SHORT)
    assert short.qty == Decimal("-1.000")
    assert short.key == ("COMPUSDT", PositionSide.SHORT)


def test_position_risk_v2_hedge_and_one_way() -> None:
    long, short = parse_positions(
        _load("nautilus_http_futures_account_positions_hedge.json"), seen_ts_ms=SEEN
    )
    assert long.key == ("BTCUSDT", PositionSide.LONG)
    assert long.qty == Decimal("20")
    assert short.key == ("BTCUSDT", PositionSide.SHORT)
    assert short.qty == Decimal("-10")
    assert short.update_ts_ms == 0
    (flat,) = parse_positions(
        _load("nautilus_http_futures_account_positions_one_way.json"), seen_ts_ms=SEEN
    )
    assert flat.key == ("BTCUSDT", PositionSide.BOTH)
    assert flat.qty == 0
    (oneway,) = parse_positions(_load("ccxt_fapi_v3_positionRisk_all.json"), seen_ts_ms=SEEN)
    assert oneway.update_ts_ms == 1722161166529  # quoted integer accepted
    assert oneway.qty == Decimal("0.009")


def test_order_ids_above_2_pow_53_stay_exact() -> None:
    lite = parse_user_event(_raw("nautilus_ws_futures_trade_lite.json"), seen_ts_ms=SEEN)
    assert isinstance(lite, OtherEvent)
    assert lite.event_type == "TRADE_LITE"
    assert lite.payload["i"] == 8389765739703625592
    assert lite.payload["i"] > 2**53

    events = [
        parse_user_event(e, seen_ts_ms=SEEN)
        for e in _load("jqcta_ws_algo_stop_market_lifecycle_2025_sequence.json")
    ]
    triggered = events[4]
    assert isinstance(triggered, AlgoUpdate)
    assert triggered.actual_order_id == BIG_ID

    base = _otu()
    base["o"]["i"] = BIG_ID
    event = parse_user_event(json.dumps(base), seen_ts_ms=SEEN)
    assert isinstance(event, OrderUpdate)
    assert event.order.order_id == BIG_ID
    base["o"]["i"] = str(BIG_ID)
    event = parse_user_event(base, seen_ts_ms=SEEN)
    assert isinstance(event, OrderUpdate)
    assert event.order.order_id == BIG_ID


@pytest.mark.parametrize(
    ("name", "client_id", "execution_type", "status"),
    [
        (
            "nautilus_ws_futures_order_update_liquidation.json",
            "autoclose-1234567890123456",
            "CALCULATED",
            OrderStatus.FILLED,
        ),
        ("nautilus_ws_futures_order_update_adl.json", "adl_autoclose", "CALCULATED", "FILLED"),
        (
            "nautilus_ws_futures_order_update_settlement.json",
            "settlement_autoclose-1111222233334444",
            "CALCULATED",
            OrderStatus.FILLED,
        ),
        (
            "nautilus_rs_futures_order_update_adl.json",
            "adl_autoclose_12345",
            "CALCULATED",
            OrderStatus.FILLED,  # X NEW_ADL with z == q
        ),
        (
            "nautilus_rs_futures_order_update_calculated_pending.json",
            "autoclose-pending-0000",
            "CALCULATED",
            OrderStatus.NEW,  # no N/n keys at all
        ),
        (
            "nautilus_ws_futures_order_update_liquidation_zero_qty.json",
            "autoclose-7654321098765432",
            "CALCULATED",
            OrderStatus.FILLED,  # N/n null
        ),
    ],
)
def test_system_orders_parse_and_are_not_ours(
    name: str, client_id: str, execution_type: str, status: str
) -> None:
    event = parse_user_event(_load(name), seen_ts_ms=SEEN)
    assert isinstance(event, OrderUpdate)
    assert event.order.client_order_id == client_id
    assert event.execution_type == execution_type
    assert event.order.status == status
    assert not is_ours(event.order.client_order_id)


def test_our_order_update_is_ours() -> None:
    cid = generate_client_order_id(
        strategy_id="d", symbol="BTCUSDT", level_id=1, ts_seconds=1704067200, seq=1
    )
    base = _otu()
    base["o"]["c"] = cid
    event = parse_user_event(base, seen_ts_ms=SEEN)
    assert isinstance(event, OrderUpdate)
    assert is_ours(event.order.client_order_id)


def test_order_trade_update_fields() -> None:
    event = parse_user_event(
        _load("nautilus_rs_futures_order_update_trade_partial.json"), seen_ts_ms=SEEN
    )
    assert isinstance(event, OrderUpdate)
    order = event.order
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert (order.qty, order.executed_qty) == (Decimal("0.002"), Decimal("0.001"))
    assert order.price == Decimal("7100.50")
    assert order.side is Side.BUY
    assert order.position_side is PositionSide.LONG
    assert order.order_id == 8886774
    assert order.update_ts_ms == 1568879465651
    assert order.created_ts_ms == 0  # x TRADE: not a creation
    assert order.seen_ts_ms == SEEN
    assert event.trade_id == 12345678
    assert event.last_filled_qty == Decimal("0.001")

    new = parse_user_event(_load("docs_ORDER_TRADE_UPDATE.json"), seen_ts_ms=SEEN)
    assert isinstance(new, OrderUpdate)
    assert new.order.price is None  # "p": "0" (trailing stop market)
    assert new.order.order_type == "TRAILING_STOP_MARKET"
    assert new.order.created_ts_ms == 1568879465650
    assert new.event_ts_ms == 1568879465651

    reduce_only = parse_user_event(
        _load("nautilus_ws_futures_order_update_new_reduce_only_qty.json"), seen_ts_ms=SEEN
    )
    assert isinstance(reduce_only, OrderUpdate)
    assert reduce_only.order.reduce_only is True

    amendment = parse_user_event(
        _load("jqcta_ws_ORDER_TRADE_UPDATE_2023_amendment.json"), seen_ts_ms=SEEN
    )
    assert isinstance(amendment, OrderUpdate)
    assert amendment.execution_type == "AMENDMENT"
    assert amendment.order.status is OrderStatus.NEW
    assert amendment.order.price == Decimal("27800")


@pytest.mark.parametrize(
    ("name", "algo_status", "status", "executed", "actual_order_id"),
    [
        ("nautilus_ws_futures_algo_update_triggering.json", "TRIGGERING", "NEW", "0", None),
        ("nautilus_ws_futures_algo_update_triggered.json", "TRIGGERED", "NEW", "0", 88937381063),
        ("nautilus_ws_futures_algo_update_finished.json", "FINISHED", "FILLED", "38", 88937381063),
        (
            "nautilus_ws_futures_algo_update_finished_canceled.json",
            "FINISHED",
            "CANCELED",
            "0",
            88937381064,
        ),
        ("nautilus_rs_futures_algo_update_new.json", "NEW", "NEW", "0", None),
        ("nautilus_rs_futures_algo_update_canceled.json", "CANCELED", "CANCELED", "0", None),
    ],
)
def test_algo_update_status_mapping(
    name: str, algo_status: str, status: str, executed: str, actual_order_id: int | None
) -> None:
    event = parse_user_event(_load(name), seen_ts_ms=SEEN)
    assert isinstance(event, AlgoUpdate)
    assert event.algo_status == algo_status
    assert event.order.status == status
    assert event.order.executed_qty == Decimal(executed)
    assert event.order.is_algo
    assert event.actual_order_id == actual_order_id


def test_algo_update_fields_and_lifecycle() -> None:
    event = parse_user_event(_load("nautilus_rs_futures_algo_update_canceled.json"), seen_ts_ms=1)
    assert isinstance(event, AlgoUpdate)
    order = event.order
    assert order.client_order_id == "Q5xaq5EGKgXXa0fD7fs0Ip"
    assert order.order_id == event.algo_id == 2148719
    assert order.order_type == "TAKE_PROFIT"
    assert order.price == Decimal("750")
    assert order.update_ts_ms == 1750515742297
    assert event.reject_reason == "Reduce Only reject"

    sequence = [
        parse_user_event(e, seen_ts_ms=SEEN)
        for e in _load("jqcta_ws_algo_stop_market_lifecycle_2025_sequence.json")
    ]
    summary = [
        (type(e).__name__, e.order.status.value, e.order.is_algo)
        for e in sequence
        if isinstance(e, OrderUpdate | AlgoUpdate)
    ]
    assert summary == [
        ("AlgoUpdate", "NEW", True),
        ("AlgoUpdate", "NEW", True),  # TRIGGERING
        ("OrderUpdate", "NEW", False),  # the child MARKET order
        ("OrderUpdate", "FILLED", False),
        ("AlgoUpdate", "NEW", True),  # TRIGGERED: outcome not known yet
        ("AlgoUpdate", "FILLED", True),  # FINISHED with aq == q
    ]
    child = sequence[2]
    assert isinstance(child, OrderUpdate)
    assert child.parent_algo_id == 2000000037542090
    assert {
        e.order.client_order_id for e in sequence if isinstance(e, OrderUpdate | AlgoUpdate)
    } == {"testtest0843"}


def test_account_update_positions_and_reason() -> None:
    event = parse_user_event(_load("docs_ACCOUNT_UPDATE.json"), seen_ts_ms=SEEN)
    assert isinstance(event, AccountUpdate)
    assert event.reason == "ORDER"
    assert event.event_ts_ms == 1564745798939
    assert event.transaction_ts_ms == 1564745798938
    assert [(p.key, p.qty) for p in event.positions] == [
        (("BTCUSDT", PositionSide.BOTH), Decimal("0")),
        (("BTCUSDT", PositionSide.LONG), Decimal("20")),
        (("BTCUSDT", PositionSide.SHORT), Decimal("-10")),
    ]
    assert event.positions[1].entry_price == Decimal("6563.66500")
    assert all(p.mark_price is None for p in event.positions)
    assert all(p.update_ts_ms == 1564745798938 for p in event.positions)
    assert all(p.seen_ts_ms == SEEN for p in event.positions)

    deposit = parse_user_event(
        _load("jqcta_ws_ACCOUNT_UPDATE_2023_admin_deposit.json"), seen_ts_ms=SEEN
    )
    assert isinstance(deposit, AccountUpdate)
    assert deposit.reason == "ADMIN_DEPOSIT"
    assert deposit.positions == ()

    short = parse_user_event(
        _load("jqcta_ws_ACCOUNT_UPDATE_2023_order_xem_short.json"), seen_ts_ms=SEEN
    )
    assert isinstance(short, AccountUpdate)
    assert [(p.key, p.qty) for p in short.positions] == [
        (("XEMUSDT", PositionSide.BOTH), Decimal("-3367"))
    ]


def test_account_update_without_positions_is_fine() -> None:
    funding = {"e": "ACCOUNT_UPDATE", "E": 5, "T": 4, "a": {"m": "FUNDING_FEE", "B": []}}
    event = parse_user_event(funding, seen_ts_ms=SEEN)
    assert isinstance(event, AccountUpdate)
    assert event.positions == ()
    assert event.reason == "FUNDING_FEE"


def test_listen_key_expired_with_string_time() -> None:
    event = parse_user_event(_load("docs_listenKeyExpired.json"), seen_ts_ms=SEEN)
    assert isinstance(event, ListenKeyExpired)
    assert event.event_ts_ms == 1736996475556
    assert event.listen_key is not None
    assert event.listen_key.startswith("WsCMN0a4")


@pytest.mark.parametrize(
    ("payload", "event_type"),
    [
        ({"e": "TRADE_LITE", "E": 1, "s": "BTCUSDT"}, "TRADE_LITE"),
        ({"e": "MARGIN_CALL", "E": 1, "p": []}, "MARGIN_CALL"),
        ({"e": "STRATEGY_UPDATE", "E": 1}, "STRATEGY_UPDATE"),
        ({"e": "GRID_UPDATE"}, "GRID_UPDATE"),
        ({"e": "SOMETHING_NEW_IN_2027", "E": "17", "x": [1, 2]}, "SOMETHING_NEW_IN_2027"),
    ],
)
def test_other_events_are_tolerated(payload: dict[str, Any], event_type: str) -> None:
    event = parse_user_event(payload, seen_ts_ms=SEEN)
    assert isinstance(event, OtherEvent)
    assert event.event_type == event_type
    wrapped = parse_user_event({"stream": "abc", "data": payload}, seen_ts_ms=SEEN)
    assert wrapped == event


def test_combined_stream_wrapper_and_bare_event_agree() -> None:
    wrapped = _load("nautilus_ws_futures_order_update_liquidation.json")
    assert set(wrapped) == {"stream", "data"}
    from_wrapper = parse_user_event(wrapped, seen_ts_ms=SEEN)
    bare = parse_user_event(wrapped["data"], seen_ts_ms=SEEN)
    assert from_wrapper == bare


def test_rest_orders() -> None:
    (order,) = parse_orders(_load("docs_GET_fapi_v1_openOrders.json"), seen_ts_ms=SEEN)
    assert order.client_order_id == "abc"
    assert order.order_id == 1917641
    assert order.qty == Decimal("0.40")
    assert order.status is OrderStatus.NEW
    assert order.position_side is PositionSide.SHORT
    assert order.order_type == "TRAILING_STOP_MARKET"
    assert order.price is None
    assert order.created_ts_ms == order.update_ts_ms == 1579276756075

    quoted = parse_order(_load("ccxt_fapi_v1_openOrder.json"), seen_ts_ms=SEEN)
    assert quoted.order_id == 664082074
    assert quoted.created_ts_ms == 1707907323983
    assert quoted.update_ts_ms == 1707907323991
    assert quoted.price == Decimal("50.00")

    canceled = parse_order(_load("reallog_2024_DELETE_fapi_v1_order_LIMIT.json"), seen_ts_ms=SEEN)
    assert canceled.status is OrderStatus.CANCELED
    assert canceled.created_ts_ms == 0  # DELETE replies have no "time"
    assert canceled.update_ts_ms == 1704382866522

    tp = parse_order(
        _load("reallog_2024_POST_fapi_v1_order_TAKE_PROFIT_MARKET_reduceOnly.json"),
        seen_ts_ms=SEEN,
    )
    assert tp.reduce_only is True
    assert tp.price is None  # "0.0000000"

    hedge = parse_orders(_load("reallog_2023_GET_fapi_v1_allOrders_hedge.json"), seen_ts_ms=SEEN)
    assert [(o.status, o.position_side) for o in hedge] == [
        (OrderStatus.CANCELED, PositionSide.SHORT),
        (OrderStatus.NEW, PositionSide.SHORT),
    ]


def test_rest_algo_orders() -> None:
    (algo,) = parse_algo_orders(_load("nautilus_rs_futures_open_algo_orders.json"), seen_ts_ms=1)
    assert algo.is_algo
    assert algo.client_order_id == "test-algo-order-1"
    assert algo.order_id == 123456789
    assert algo.order_type == "STOP_MARKET"
    assert algo.status is OrderStatus.NEW
    assert algo.created_ts_ms == 1625474304765

    finished = parse_algo_order(
        _load("nautilus_rs_futures_algo_order_response.json"), seen_ts_ms=SEEN
    )
    assert finished.status is OrderStatus.FILLED
    assert finished.executed_qty == Decimal("0.001")

    # The documented openAlgoOrders shape: "orderType", "actualOrderId" "".
    doc_row = {
        "algoId": 2148627,
        "clientAlgoId": "MRumok0dkhrP4kCm12AHaB",
        "algoType": "CONDITIONAL",
        "orderType": "TAKE_PROFIT",
        "symbol": "BNBUSDT",
        "side": "SELL",
        "positionSide": "BOTH",
        "quantity": "0.01",
        "algoStatus": "NEW",
        "actualOrderId": "",
        "triggerPrice": "750.000",
        "price": "750.000",
        "icebergQuantity": None,
        "reduceOnly": False,
        "createTime": 1750514941540,
        "updateTime": 1750514941540,
    }
    parsed = parse_algo_order(doc_row, seen_ts_ms=SEEN)
    assert parsed.order_type == "TAKE_PROFIT"
    assert parsed.price == Decimal("750.000")


@pytest.mark.parametrize(
    ("algo_status", "qty", "executed", "expected"),
    [
        ("NEW", "1", None, OrderStatus.NEW),
        ("TRIGGERING", "1", "0", OrderStatus.NEW),
        ("TRIGGERED", "1", "0", OrderStatus.NEW),
        ("TRIGGERED", "1", "0.4", OrderStatus.PARTIALLY_FILLED),
        ("FINISHED", "1", "1", OrderStatus.FILLED),
        ("FINISHED", "1", "0.4", OrderStatus.CANCELED),
        ("FINISHED", "1", "0", OrderStatus.CANCELED),
        ("FINISHED", "1", None, OrderStatus.FILLED),
        ("FINISHED", "0", "0.7", OrderStatus.FILLED),  # closePosition: no quantity
        ("CANCELED", "1", None, OrderStatus.CANCELED),
        ("EXPIRED", "1", None, OrderStatus.EXPIRED),
        ("REJECTED", "1", None, OrderStatus.REJECTED),
    ],
)
def test_algo_status_table(
    algo_status: str, qty: str, executed: str | None, expected: OrderStatus
) -> None:
    row: dict[str, Any] = {
        "algoId": 1,
        "clientAlgoId": "x",
        "orderType": "STOP_MARKET",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "quantity": qty,
        "algoStatus": algo_status,
    }
    if executed is not None:
        row["executedQty"] = executed
    assert parse_algo_order(row, seen_ts_ms=SEEN).status is expected


def test_exchange_info_filters() -> None:
    infos = parse_exchange_info(_load("nautilus_http_futures_market_exchange_info.json"))
    assert set(infos) == {"BTCUSDT", "ETHUSDT", "BTCUSDT_220325"}
    btc = infos["BTCUSDT"]
    assert btc.tick_size == Decimal("0.10")
    assert btc.step_size == Decimal("0.001")
    assert btc.min_qty == Decimal("0.001")
    assert btc.max_qty == Decimal("1000")
    assert btc.market_step_size == Decimal("0.001")
    assert btc.market_max_qty == Decimal("1000")
    assert btc.min_notional == Decimal("10")
    assert btc.market_step == Decimal("0.001")
    assert btc.status == "TRADING"
    assert infos["BTCUSDT_220325"].tick_size == Decimal("0.1")


def test_parse_error_bodies() -> None:
    assert parse_error({"code": -2011, "msg": "Unknown order sent."}) == (
        -2011,
        "Unknown order sent.",
    )
    assert parse_error('{"code":-1021,"msg":"x"}') == (-1021, "x")
    assert parse_error({"code": "200", "msg": "success"}) == (200, "success")
    assert parse_error({"code": -1000}) == (-1000, "")


# --- garbled messages ---------------------------------------------------------------------------


def _otu() -> dict[str, Any]:
    """A well-formed ORDER_TRADE_UPDATE (values of our own)."""
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": 1765638258184,
        "T": 1765638258183,
        "o": {
            "s": "BTCUSDT",
            "c": "grinder_d_BTCUSDT_1_1704067200_1",
            "S": "BUY",
            "o": "LIMIT",
            "f": "GTC",
            "q": "0.010",
            "p": "42000.10",
            "ap": "0",
            "sp": "0",
            "x": "NEW",
            "X": "NEW",
            "i": 4087922044,
            "l": "0",
            "z": "0",
            "L": "0",
            "T": 1765638258183,
            "t": 0,
            "m": False,
            "R": False,
            "ot": "LIMIT",
            "ps": "BOTH",
            "si": 0,
            "ss": 0,
        },
    }


def _account_update() -> dict[str, Any]:
    return {
        "e": "ACCOUNT_UPDATE",
        "E": 1688225220407,
        "T": 1688225220403,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": "5735.6", "cw": "5735.6", "bc": "0"}],
            "P": [{"s": "BTCUSDT", "pa": "-0.001", "ep": "30566.3", "ps": "SHORT"}],
        },
    }


def _algo_update() -> dict[str, Any]:
    return {
        "e": "ALGO_UPDATE",
        "T": 1765638258194,
        "E": 1765638258199,
        "o": {
            "caid": "grinder_d_BTCUSDT_2_1704067200_3",
            "aid": 2000000037542090,
            "at": "CONDITIONAL",
            "o": "STOP_MARKET",
            "s": "BTCUSDT",
            "S": "SELL",
            "ps": "BOTH",
            "q": "0.05",
            "X": "TRIGGERED",
            "ai": "8389766049535966587",
            "ap": "0",
            "aq": "0",
            "tp": "41000",
            "p": "0",
            "R": True,
        },
    }


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (``_DELETE`` removes it)."""
    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    target: Any = doc
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()
_OTU_TEXT = json.dumps(_otu())

GARBLED: list[tuple[str, Any, str]] = [
    # (case id, message, text the error must contain)
    ("empty text", "", "user event: invalid JSON"),
    ("truncated json 1", _OTU_TEXT[:1], "invalid JSON"),
    ("truncated json half", _OTU_TEXT[: len(_OTU_TEXT) // 2], "invalid JSON"),
    ("truncated json last byte", _OTU_TEXT[:-1], "invalid JSON"),
    ("trailing garbage", _OTU_TEXT + "}", "invalid JSON"),
    ("bad utf8", b"\xff\xfe{}", "invalid JSON"),
    ("deep nesting", "[" * 100_000, "invalid JSON"),
    ("nan literal", _OTU_TEXT.replace('"E": 1765638258184', '"E": NaN'), "NaN"),
    ("5000 digit integer", '{"e": "X", "E": ' + "9" * 5000 + "}", "invalid JSON"),
    ("json null", "null", "expected a JSON object, got null"),
    ("json number", "123", "expected a JSON object, got integer 123"),
    ("list not dict", [_otu()], "expected a JSON object, got an array"),
    ("list text", "[" + _OTU_TEXT + "]", "expected a JSON object, got an array"),
    ("python object", object(), "expected a JSON object"),
    ("empty object", {}, "user event: field e: missing"),
    ("event type number", {"e": 5}, "field e: expected an event type string, got integer 5"),
    ("wrapper data list", {"stream": "x", "data": [1]}, "field data: expected a JSON object"),
    ("wrapper without data", {"stream": "x"}, "field data: missing"),
    ("o is a list", _with(_otu(), "o", [1, 2]), "ORDER_TRADE_UPDATE: field o: expected a JSON"),
    ("o missing", _with(_otu(), "o", _DELETE), "ORDER_TRADE_UPDATE: field o: missing"),
    ("q abc", _with(_otu(), "o.q", "abc"), "field o.q: expected a decimal string, got 'abc'"),
    ("q float", _with(_otu(), "o.q", 0.01), "field o.q: expected a decimal string, got number"),
    ("q NaN", _with(_otu(), "o.q", "NaN"), "field o.q"),
    ("q nan", _with(_otu(), "o.q", "nan"), "field o.q"),
    ("q Infinity", _with(_otu(), "o.q", "Infinity"), "field o.q"),
    ("q -Infinity", _with(_otu(), "o.q", "-Infinity"), "field o.q"),
    ("q sNaN", _with(_otu(), "o.q", "sNaN"), "field o.q"),
    ("q exponent", _with(_otu(), "o.q", "1e5"), "field o.q"),
    ("q blank padded", _with(_otu(), "o.q", " 1"), "field o.q"),
    ("q underscore", _with(_otu(), "o.q", "1_000"), "field o.q"),
    ("q arabic digits", _with(_otu(), "o.q", "١٢"), "field o.q"),
    ("q hex", _with(_otu(), "o.q", "0x10"), "field o.q"),
    ("q empty", _with(_otu(), "o.q", ""), "field o.q"),
    ("q plus", _with(_otu(), "o.q", "+1"), "field o.q"),
    ("q huge text", _with(_otu(), "o.q", "9" * 5000), "(5000 characters)"),
    ("q 100 digits", _with(_otu(), "o.q", "1" + "0" * 100), "field o.q"),
    ("q huge int", _with(_otu(), "o.q", 10**40), "field o.q"),
    ("q list", _with(_otu(), "o.q", ["1"]), "got an array"),
    ("q null", _with(_otu(), "o.q", None), "field o.q: expected a decimal string, got null"),
    ("q missing", _with(_otu(), "o.q", _DELETE), "field o.q: missing"),
    ("p abc", _with(_otu(), "o.p", "12,5"), "field o.p"),
    ("z bool", _with(_otu(), "o.z", True), "field o.z: expected a decimal string, got true"),
    ("i abc", _with(_otu(), "o.i", "abc"), "field o.i: expected a non-negative 64-bit integer"),
    ("i negative", _with(_otu(), "o.i", -1), "field o.i"),
    ("i float", _with(_otu(), "o.i", 1.5), "field o.i"),
    ("i bool", _with(_otu(), "o.i", True), "field o.i"),
    ("i 2**64", _with(_otu(), "o.i", 2**64), "field o.i"),
    ("i 10**30", _with(_otu(), "o.i", 10**30), "field o.i"),
    ("i 25 digit string", _with(_otu(), "o.i", "1" * 25), "field o.i"),
    ("i missing", _with(_otu(), "o.i", _DELETE), "field o.i: missing"),
    ("E text", _with(_otu(), "E", "soon"), "ORDER_TRADE_UPDATE: field E"),
    ("E missing", _with(_otu(), "E", _DELETE), "ORDER_TRADE_UPDATE: field E: missing"),
    ("T object", _with(_otu(), "o.T", {}), "field o.T: expected"),
    ("side unknown", _with(_otu(), "o.S", "HOLD"), "field o.S: expected BUY or SELL"),
    ("side list", _with(_otu(), "o.S", ["BUY"]), "field o.S"),
    ("status unknown", _with(_otu(), "o.X", "WHATEVER"), "field o.X: expected an order status"),
    ("status missing", _with(_otu(), "o.X", _DELETE), "field o.X: missing"),
    ("execution type missing", _with(_otu(), "o.x", _DELETE), "field o.x: missing"),
    ("position side", _with(_otu(), "o.ps", "MIDDLE"), "field o.ps: expected BOTH, LONG"),
    ("reduce only text", _with(_otu(), "o.R", "yes"), "field o.R: expected a boolean"),
    ("client id number", _with(_otu(), "o.c", 123), "field o.c: expected a non-empty string"),
    ("client id empty", _with(_otu(), "o.c", ""), "field o.c"),
    ("symbol missing", _with(_otu(), "o.s", _DELETE), "field o.s: missing"),
    ("no order type", _with(_with(_otu(), "o.ot", _DELETE), "o.o", _DELETE), "field o.o"),
    ("si text", _with(_otu(), "o.si", "x"), "field o.si"),
    ("a is a list", _with(_account_update(), "a", []), "ACCOUNT_UPDATE: field a"),
    ("reason missing", _with(_account_update(), "a.m", _DELETE), "field a.m: missing"),
    ("P is an object", _with(_account_update(), "a.P", {}), "field a.P: expected a JSON array"),
    ("P row is a list", _with(_account_update(), "a.P.0", []), "field a.P[0]: expected"),
    ("pa abc", _with(_account_update(), "a.P.0.pa", "abc"), "field a.P[0].pa"),
    ("pa missing", _with(_account_update(), "a.P.0.pa", _DELETE), "field a.P[0].pa: missing"),
    ("short positive", _with(_account_update(), "a.P.0.pa", "1"), "contradicts positionSide"),
    ("ps unknown", _with(_account_update(), "a.P.0.ps", "UP"), "field a.P[0].ps"),
    ("algo status", _with(_algo_update(), "o.X", "PENDING"), "field o.X: expected an algo order"),
    ("algo id missing", _with(_algo_update(), "o.aid", _DELETE), "ALGO_UPDATE: field o.aid"),
    ("algo actual id", _with(_algo_update(), "o.ai", "xyz"), "field o.ai"),
    ("algo executed", _with(_algo_update(), "o.aq", "a"), "field o.aq"),
    ("algo client id", _with(_algo_update(), "o.caid", None), "field o.caid"),
    ("expired bad E", {"e": "listenKeyExpired", "E": "x1"}, "listenKeyExpired: field E"),
    ("other bad E", {"e": "TRADE_LITE", "E": [1]}, "TRADE_LITE: field E"),
]


@pytest.mark.parametrize(
    ("message", "expected"), [g[1:] for g in GARBLED], ids=[g[0] for g in GARBLED]
)
def test_garbled_user_event_raises_one_line_wire_format_error(message: Any, expected: str) -> None:
    with pytest.raises(WireFormatError) as info:
        parse_user_event(message, seen_ts_ms=SEEN)
    text = str(info.value)
    assert expected in text
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) < 400
    assert isinstance(info.value, ValueError)


def test_example_message_is_exact() -> None:
    with pytest.raises(WireFormatError) as info:
        parse_user_event(_with(_otu(), "o.q", "abc"), seen_ts_ms=SEEN)
    assert str(info.value) == "ORDER_TRADE_UPDATE: field o.q: expected a decimal string, got 'abc'"
    assert info.value.kind == "ORDER_TRADE_UPDATE"
    assert info.value.field == "o.q"


def test_wire_format_error_survives_pickling() -> None:
    import pickle

    err = WireFormatError("order", "origQty", "missing")
    clone = pickle.loads(pickle.dumps(err))
    assert str(clone) == str(err) == "order: field origQty: missing"


def _order_row() -> dict[str, Any]:
    return {
        "orderId": 19420814937,
        "symbol": "XRPUSDT",
        "status": "NEW",
        "clientOrderId": "grinder_d_XRPUSDT_1_1704067200_7",
        "price": "0.6515",
        "origQty": "15",
        "executedQty": "0",
        "type": "LIMIT",
        "origType": "LIMIT",
        "side": "BUY",
        "positionSide": "BOTH",
        "reduceOnly": False,
        "time": 1644032291286,
        "updateTime": 1644032291286,
    }


def _position_row() -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "positionSide": "LONG",
        "positionAmt": "0.005",
        "entryPrice": "50000.0",
        "markPrice": "51000.0",
        "updateTime": 1625474304765,
    }


def _order_with(path: str, value: Any) -> Callable[[], Any]:
    """Parsing the good order row with ``path`` set to ``value``."""
    return lambda: parse_order(_with(_order_row(), path, value), seen_ts_ms=1)


def _position_with(path: str, value: Any) -> Callable[[], Any]:
    """Parsing the good position row with ``path`` set to ``value``."""
    return lambda: parse_position(_with(_position_row(), path, value), seen_ts_ms=1)


REST_GARBLED: list[tuple[str, Callable[[], Any], str]] = [
    ("order not object", lambda: parse_order([], seen_ts_ms=1), "order: expected a JSON object"),
    (
        "order qty float",
        _order_with("origQty", 15.0),
        "order: field origQty: expected a decimal string, got number 15.0",
    ),
    ("order id text", _order_with("orderId", "12a"), "order: field orderId"),
    (
        "order status",
        _order_with("status", "DONE"),
        "order: field status: expected an order status, got 'DONE'",
    ),
    (
        "order no type",
        lambda: parse_order(
            _with(_with(_order_row(), "type", _DELETE), "origType", _DELETE), seen_ts_ms=1
        ),
        "order: field type: missing",
    ),
    (
        "order list row",
        lambda: parse_orders([_order_row(), "x"], seen_ts_ms=1),
        "openOrders: field [1]: expected a JSON object, got 'x'",
    ),
    (
        "order list row field",
        lambda: parse_orders([_order_row(), _with(_order_row(), "side", "B")], seen_ts_ms=1),
        "openOrders: field [1].side: expected BUY or SELL, got 'B'",
    ),
    (
        "orders not a list",
        lambda: parse_orders({"orders": []}, seen_ts_ms=1),
        "openOrders: expected a JSON array, got an object",
    ),
    (
        "position NaN",
        _position_with("positionAmt", "NaN"),
        "position: field positionAmt: expected a decimal string, got 'NaN'",
    ),
    (
        "position long negative",
        _position_with("positionAmt", "-1"),
        "position: field positionAmt: amount -1 contradicts positionSide LONG",
    ),
    (
        "position mark price",
        lambda: parse_positions([_with(_position_row(), "markPrice", "Infinity")], seen_ts_ms=1),
        "positionRisk: field [0].markPrice",
    ),
    (
        "algo status",
        lambda: parse_algo_order(
            {"algoId": 1, "clientAlgoId": "a", "type": "STOP", "symbol": "X", "side": "BUY"},
            seen_ts_ms=1,
        ),
        "algo order: field algoStatus: missing",
    ),
    (
        "exchange info no symbols",
        lambda: parse_exchange_info({"symbols": None}),
        "exchangeInfo: field symbols: expected a JSON array, got null",
    ),
    (
        "exchange info no lot size",
        lambda: parse_exchange_info(
            {
                "symbols": [
                    {
                        "symbol": "BTCUSDT",
                        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.1"}],
                    }
                ]
            }
        ),
        "exchangeInfo: field symbols[0].filters: no LOT_SIZE filter",
    ),
    (
        "exchange info bad tick",
        lambda: parse_exchange_info(
            {
                "symbols": [
                    {
                        "symbol": "BTCUSDT",
                        "filters": [
                            {"filterType": "PRICE_FILTER", "tickSize": 0.1},
                            {"filterType": "LOT_SIZE", "stepSize": "1", "minQty": "1"},
                        ],
                    }
                ]
            }
        ),
        "exchangeInfo: field symbols[0].filters[0].tickSize: expected a decimal string",
    ),
    ("error no code", lambda: parse_error({"msg": "x"}), "error body: field code: missing"),
    ("error text", lambda: parse_error("<html>"), "error body: invalid JSON"),
    ("error list", lambda: parse_error([1]), "error body: expected a JSON object, got an array"),
]


@pytest.mark.parametrize(
    ("call", "expected"), [g[1:] for g in REST_GARBLED], ids=[g[0] for g in REST_GARBLED]
)
def test_garbled_rest_bodies_raise_wire_format_error(
    call: Callable[[], Any], expected: str
) -> None:
    with pytest.raises(WireFormatError) as info:
        call()
    text = str(info.value)
    assert expected in text
    assert "\n" not in text


# --- hypothesis: mutated events parse or raise WireFormatError ----------------------------------


def _corpus_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [_otu(), _account_update(), _algo_update()]
    if not CORPUS.is_dir():
        return events
    for path in sorted(CORPUS.glob("*.json")):
        if re.search(r"UPDATE|update|TRADE_LITE|trade_lite|listenKeyExpired|MARGIN", path.name):
            doc = json.loads(path.read_text(encoding="utf-8"))
            events.extend(doc if isinstance(doc, list) else [doc])
    return events


EVENTS = _corpus_events()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


_INTERESTING = st.sampled_from(
    [
        "",
        "0",
        "-0",
        "0.000",
        "-1",
        "1e5",
        "NaN",
        "Infinity",
        "9" * 30,
        "9" * 70,
        "BUY",
        "SELL",
        "LONG",
        "SHORT",
        "BOTH",
        "NEW",
        "FILLED",
        "TRIGGERED",
        "FINISHED",
        "NEW_ADL",
        "ORDER_TRADE_UPDATE",
        "ACCOUNT_UPDATE",
        "ALGO_UPDATE",
        "listenKeyExpired",
        str(BIG_ID),
        2**63,
        2**63 - 1,
        -(2**63),
        10**100,
        True,
        None,
    ]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
_MUTATION = st.tuples(
    st.floats(0, 1, exclude_max=True), st.one_of(_INTERESTING, _JSON, st.just(_DELETE))
)


def _mutate(base: Any, mutations: list[tuple[float, Any]]) -> Any:
    doc = copy.deepcopy(base)
    for where, value in mutations:
        paths = list(_paths(doc))
        if not paths:
            return value if value is not _DELETE else doc
        *parents, last = paths[int(where * len(paths))]
        target = doc
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return doc


def _parse_or_wire_error(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except WireFormatError as exc:
        text = str(exc)
        assert "\n" not in text
        assert text
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(EVENTS),
    mutations=st.lists(_MUTATION, min_size=1, max_size=3),
    wrap=st.booleans(),
)
def test_fuzz_mutated_events_parse_or_raise_wire_format_error(
    base: dict[str, Any], mutations: list[tuple[float, Any]], wrap: bool
) -> None:
    message = _mutate(base, mutations)
    if wrap:
        message = {"stream": "fuzz", "data": message}
    event = _parse_or_wire_error(lambda: parse_user_event(message, seen_ts_ms=SEEN))
    if event is not None:
        _check_event(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(EVENTS),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=3),
)
def test_fuzz_damaged_text_parses_or_raises_wire_format_error(
    base: dict[str, Any], cut: float, flips: list[tuple[float, int]]
) -> None:
    raw = bytearray(json.dumps(base).encode())
    raw = raw[: max(0, int(len(raw) * cut))] if cut < 0.5 else raw
    for where, byte in flips:
        if raw:
            raw[int(where * len(raw))] = byte
    event = _parse_or_wire_error(lambda: parse_user_event(bytes(raw), seen_ts_ms=SEEN))
    if event is not None:
        _check_event(event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["order", "position", "algo"]),
    mutations=st.lists(_MUTATION, min_size=1, max_size=3),
)
def test_fuzz_mutated_rest_rows_parse_or_raise_wire_format_error(
    kind: str, mutations: list[tuple[float, Any]]
) -> None:
    if kind == "order":
        row = _mutate(_order_row(), mutations)
        order = _parse_or_wire_error(lambda: parse_order(row, seen_ts_ms=SEEN))
        if order is not None:
            _check_order(order, is_algo=False)
    elif kind == "position":
        row = _mutate(_position_row(), mutations)
        position = _parse_or_wire_error(lambda: parse_position(row, seen_ts_ms=SEEN))
        if position is not None:
            _check_position(position)
    else:
        base = {
            "algoId": 5,
            "clientAlgoId": "grinder_d_BTCUSDT_2_1704067200_3",
            "orderType": "STOP_MARKET",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "quantity": "0.05",
            "algoStatus": "NEW",
            "createTime": 1,
            "updateTime": 2,
        }
        row = _mutate(base, mutations)
        algo = _parse_or_wire_error(lambda: parse_algo_order(row, seen_ts_ms=SEEN))
        if algo is not None:
            _check_order(algo, is_algo=True)


# --- error_from_response ------------------------------------------------------------------------

# What each documented code must become (an independent statement of the mapping).
EXPECTED_CLASS: dict[int, type[BinanceError]] = {
    -1001: ServerError,
    -1003: RateLimited,
    -1006: UnknownOutcome,
    -1007: UnknownOutcome,
    -1008: ServerOverloaded,
    -1015: RateLimited,
    -1021: TimestampError,
    -1022: AuthError,
    -1102: InvalidRequest,
    -1111: FilterRejected,
    -1116: InvalidRequest,
    -1121: InvalidRequest,
    -1125: ListenKeyInvalid,
    -2010: OrderRejected,
    -2011: OrderAlreadyGone,
    -2013: OrderNotFound,
    -2015: AuthError,
    -2018: InsufficientMargin,
    -2019: InsufficientMargin,
    -2021: OrderRejected,
    -2022: ReduceOnlyRejected,
    -2024: PositionInsufficient,
    -2025: OrderRejected,
    -2027: InsufficientMargin,
    -4003: FilterRejected,
    -4014: FilterRejected,
    -4015: InvalidClientOrderId,
    -4023: FilterRejected,
    -4059: NoChangeNeeded,
    -4061: PositionSideMismatch,
    -4116: DuplicateClientOrderId,
    -4118: ReduceOnlyRejected,
    -4120: AlgoEndpointRequired,
    -4131: OrderRejected,
    -4164: MinNotionalRejected,
    -5021: OrderRejected,
    -5022: OrderRejected,
    -5028: TimestampError,
}
TRANSIENT_CODES = {-1001, -1003, -1006, -1007, -1008, -1015, -1021, -5028}


def _error_entries() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-corpus")]
    entries = json.loads((CORPUS / "error_codes.json").read_text(encoding="utf-8"))
    return [pytest.param(entry, id=str(entry["code"])) for entry in entries]


@pytest.mark.parametrize("entry", _error_entries())
def test_every_documented_error_code_is_mapped(entry: dict[str, Any]) -> None:
    code = entry["code"]
    assert code in EXPECTED_CLASS, f"error code {code} has no expected class in this test"
    assert code in ERROR_SPECS
    assert ERROR_SPECS[code].name == entry["name"]
    for msg in [entry["msg"], *entry.get("msg_variants", [])]:
        status = 400
        err = error_from_response(status, {"code": code, "msg": msg}, None)
        expected = IpBanned if "banned until" in msg else EXPECTED_CLASS[code]
        assert type(err) is expected
        assert isinstance(err, ExchangeError)
        assert isinstance(err, TransientExchangeError) is (code in TRANSIENT_CODES)
        assert err.code == code
        assert err.http_status == status
        assert err.venue_msg is not None
        text = str(err)
        assert "\n" not in text
        assert entry["name"] in text
        assert f"(code {code})" in text
    for seen in entry.get("observed", []):
        body = seen.get("body")
        if body is None:
            continue
        err = error_from_response(seen["http_status"], body, None)
        assert err.code == code
        if seen["http_status"] == 418:
            assert isinstance(err, IpBanned)
        else:
            assert type(err) is EXPECTED_CLASS[code]


def test_documented_codes_cover_the_expectations() -> None:
    if not CORPUS.is_dir():
        pytest.skip(SKIP_REASON)
    documented = {e["code"] for e in _load("error_codes.json")}
    assert documented == set(EXPECTED_CLASS)
    for code, expected in EXPECTED_CLASS.items():
        assert ERROR_SPECS[code].cls is expected


def _simulator_codes() -> set[int]:
    """Every error code the bundled simulator can answer with (read from its source)."""
    package = Path(__file__).resolve().parents[2] / "src" / "grinder" / "exchange" / "simulator"
    codes: set[int] = set()
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        codes |= {int(c) for c in re.findall(r"\(\s*(-[1-5]\d{3})\s*,", text)}
        codes |= {int(c) for c in re.findall(r'"code":\s*(-[1-5]\d{3})', text)}
    return codes


def test_every_code_the_simulator_answers_with_is_mapped() -> None:
    codes = _simulator_codes()
    assert len(codes) > 40  # the pattern still finds them
    assert sorted(codes - set(ERROR_SPECS)) == []
    for code in codes:
        err = error_from_response(400, {"code": code, "msg": "m"}, None)
        assert err.name == ERROR_SPECS[code].name
        assert "does not know" not in str(err)


def test_rate_limits_and_bans() -> None:
    limited = error_from_response(429, {"code": -1003, "msg": "Too many requests"}, 7.0)
    assert type(limited) is RateLimited
    assert isinstance(limited, TransientExchangeError)
    assert limited.retry_after_s == 7.0
    assert limited.backoff_hint_s == 7.0
    assert error_from_response(429, None, None).backoff_hint_s == RateLimited.default_backoff_s
    assert type(error_from_response(429, {"code": -1015, "msg": "x"}, None)) is RateLimited

    banned = error_from_response(
        418,
        {
            "code": -1003,
            "msg": "Way too much request weight used; IP banned until 1620286253180. Please "
            "use the websocket for live updates to avoid bans.",
        },
        120.0,
    )
    assert type(banned) is IpBanned
    assert isinstance(banned, IpBanned)
    assert banned.banned_until_ms == 1620286253180
    assert banned.retry_after_s == 120.0
    # A ban is not a rate limit that one request may wait out.
    assert not isinstance(banned, RateLimited)
    bare = error_from_response(418, None, None)
    assert isinstance(bare, IpBanned)
    assert bare.banned_until_ms is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient_server_error(status: int) -> None:
    err = error_from_response(status, None, None)
    assert type(err) is ServerError
    assert isinstance(err, TransientExchangeError)
    assert err.http_status == status
    assert f"HTTP {status}" in str(err)


def test_unknown_outcomes() -> None:
    unknown = error_from_response(
        503, {"msg": "Unknown error, please check your request or try again later."}, None
    )
    assert type(unknown) is UnknownOutcome
    assert unknown.outcome_unknown
    assert isinstance(unknown, TransientExchangeError)
    assert type(error_from_response(408, None, None)) is UnknownOutcome
    assert error_from_response(400, {"code": -1007, "msg": "x"}, None).outcome_unknown
    assert not error_from_response(503, {"msg": "Service Unavailable."}, None).outcome_unknown
    assert type(error_from_response(503, {"code": -1008, "msg": "x"}, None)) is ServerOverloaded


def test_cancel_and_query_not_found() -> None:
    gone = error_from_response(400, {"code": -2011, "msg": "Unknown order sent."}, None)
    assert isinstance(gone, OrderAlreadyGone)
    assert isinstance(gone, OrderNotFound)
    assert not isinstance(gone, TransientExchangeError)
    missing = error_from_response(400, {"code": -2013, "msg": "Order does not exist."}, None)
    assert type(missing) is OrderNotFound


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, None, AuthError),
        (403, None, WafRejected),
        (400, {"code": -9999, "msg": "new"}, RequestRejected),
        (400, None, RequestRejected),
        (400, ["not", "an", "object"], RequestRejected),
        (400, "plain text", RequestRejected),
        (400, {"code": "abc", "msg": 5}, RequestRejected),
        (400, {"code": True}, RequestRejected),
        (400, {"code": 10**40}, RequestRejected),
        (None, {"code": -2022, "msg": "ReduceOnly Order is rejected."}, ReduceOnlyRejected),
        (400, {"code": "-4164", "msg": "quoted code"}, MinNotionalRejected),
    ],
)
def test_error_from_response_never_raises(status: int | None, body: Any, expected: type) -> None:
    err = error_from_response(status, body, None)
    assert type(err) is expected
    assert "\n" not in str(err)


def test_error_message_is_one_line_and_bounded() -> None:
    err = error_from_response(400, {"code": -1102, "msg": "line one\nline two" + "x" * 1000}, None)
    text = str(err)
    assert "\n" not in text
    assert len(text) < 600
    assert "MANDATORY_PARAM_EMPTY_OR_MALFORMED" in text
    assert not isinstance(err, TransientExchangeError)
