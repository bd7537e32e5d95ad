"""Client order id generation, parsing and ownership (CONTRACT §2)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from grinder.reconcile.identity import (
    DEFAULT_PREFIX,
    DEFAULT_STRATEGY_ID,
    MAX_CLIENT_ORDER_ID_LEN,
    REMEDIATION_LEVEL_ID,
    ClientOrderIdError,
    Ownership,
    ParsedClientOrderId,
    generate_client_order_id,
    is_ours,
    ownership,
    parse_client_order_id,
    remediation_client_order_id,
)

BINANCE_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}\Z")
TS = 1704067200


def gen(**overrides: object) -> str:
    args: dict[str, object] = {
        "strategy_id": "d",
        "symbol": "BTCUSDT",
        "level_id": 1,
        "ts_seconds": TS,
        "seq": 1,
    }
    args.update(overrides)
    return generate_client_order_id(**args)  # type: ignore[arg-type]


# --- generation ----------------------------------------------------------------------------


def test_defaults_match_contract_prefix_strategy_and_length_limit() -> None:
    assert DEFAULT_PREFIX == "grinder_"
    assert DEFAULT_STRATEGY_ID == "d"
    assert MAX_CLIENT_ORDER_ID_LEN == 36


def test_generate_produces_the_contract_example_id() -> None:
    assert gen() == "grinder_d_BTCUSDT_1_1704067200_1"


def test_generate_accepts_string_level_id_and_custom_prefix() -> None:
    cid = gen(level_id="L3", prefix="gr_", seq=42)
    assert cid == "gr_d_BTCUSDT_L3_1704067200_42"


def test_generate_exactly_36_chars_is_allowed() -> None:
    cid = gen(seq=12345)
    assert len(cid) == 36
    assert cid.endswith("_12345")


def test_generate_37_chars_raises_with_length_in_message_instead_of_truncating() -> None:
    with pytest.raises(ClientOrderIdError) as info:
        gen(seq=123456)
    msg = str(info.value)
    assert "37" in msg
    assert "36" in msg
    assert "grinder_d_BTCUSDT_1_1704067200_123456" in msg


def test_generate_long_strategy_id_raises_and_suggests_shorter_strategy() -> None:
    with pytest.raises(ClientOrderIdError, match="strategy id"):
        gen(strategy_id="meanreversion2024")


def test_client_order_id_error_is_a_value_error() -> None:
    assert issubclass(ClientOrderIdError, ValueError)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("strategy_id", "my_strat", "strategy_id"),
        ("strategy_id", "", "strategy_id"),
        ("strategy_id", "d-1", "strategy_id"),
        ("level_id", "a_b", "level_id"),
        ("level_id", -1, "level_id"),
        ("level_id", "", "level_id"),
        ("symbol", "btcusdt", "symbol"),
        ("symbol", "", "symbol"),
        ("symbol", "_BTCUSDT", "symbol"),
        ("symbol", "BTC-USDT", "symbol"),
        ("ts_seconds", -1, "non-negative"),
        ("seq", -5, "non-negative"),
    ],
)
def test_generate_rejects_bad_field_naming_it(field: str, value: object, needle: str) -> None:
    with pytest.raises(ClientOrderIdError, match=needle):
        gen(**{field: value})


def test_generate_rejects_prefix_with_characters_binance_refuses() -> None:
    with pytest.raises(ClientOrderIdError, match="characters"):
        gen(prefix="grinder!")


def test_generate_rejects_strategy_with_trailing_newline() -> None:
    with pytest.raises(ClientOrderIdError):
        gen(strategy_id="d\n")


def test_generate_with_empty_prefix_fails_loudly() -> None:
    with pytest.raises(ClientOrderIdError):
        gen(prefix="")


def test_remediation_id_is_ours_and_marked_as_remediation() -> None:
    cid = remediation_client_order_id(strategy_id="d", symbol="ETHUSDT", ts_seconds=TS, seq=7)
    assert cid == f"grinder_d_ETHUSDT_{REMEDIATION_LEVEL_ID}_1704067200_7"
    parsed = parse_client_order_id(cid)
    assert parsed is not None
    assert parsed.is_remediation is True
    assert is_ours(cid) is True


def test_ordinary_level_is_not_remediation() -> None:
    parsed = parse_client_order_id(gen(level_id=3))
    assert parsed is not None
    assert parsed.is_remediation is False


def test_remediation_id_over_36_chars_raises() -> None:
    with pytest.raises(ClientOrderIdError):
        remediation_client_order_id(strategy_id="d", symbol="BTCUSDT_220325", ts_seconds=TS, seq=1)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_contract_example_gives_every_field() -> None:
    assert parse_client_order_id("grinder_d_BTCUSDT_1_1704067200_1") == ParsedClientOrderId(
        prefix="grinder_",
        strategy_id="d",
        symbol="BTCUSDT",
        level_id="1",
        ts_seconds=1704067200,
        seq=1,
    )


def test_parse_delivery_symbol_with_underscore() -> None:
    parsed = parse_client_order_id("g_d_BTCUSDT_220325_2_1704067200_9", prefix="g_")
    assert parsed is not None
    assert parsed.symbol == "BTCUSDT_220325"
    assert parsed.level_id == "2"
    assert parsed.ts_seconds == 1704067200
    assert parsed.seq == 9


def test_generate_then_parse_delivery_symbol_round_trips() -> None:
    cid = gen(prefix="g_", symbol="ETHUSDT_250926", level_id="R")
    parsed = parse_client_order_id(cid, prefix="g_")
    assert parsed is not None
    assert (parsed.symbol, parsed.level_id, parsed.is_remediation) == (
        "ETHUSDT_250926",
        "R",
        True,
    )


def test_parse_with_custom_prefix_requires_that_prefix() -> None:
    cid = gen(prefix="bot2_")
    assert parse_client_order_id(cid) is None
    parsed = parse_client_order_id(cid, prefix="bot2_")
    assert parsed is not None
    assert parsed.prefix == "bot2_"


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "grinder",
        "grinder_",
        "grinder_d",
        "grinder_d_",
        "grinder_d_BTCUSDT",
        "grinder_d_BTCUSDT_1_1704067200",
        "grinder_d__1_1704067200_1",
        "grinder__BTCUSDT_1_1704067200_1",
        "grinder_d_btcusdt_1_1704067200_1",
        "grinder_d_BTCUSDT_1_-1_1",
        "grinder_d_BTCUSDT_1_1704067200_x",
        "grinder_d_BTCUSDT_1_17O4067200_1",
        "grinder_d_BTCUSDT_1_\u0661\u0662_1",
        "grinder_d_BTCUSDT_1_1704067200_1\n",
        "GRINDER_d_BTCUSDT_1_1704067200_1",
        "xgrinder_d_BTCUSDT_1_1704067200_1",
        "grinder_d-x_BTCUSDT_1_1704067200_1",
    ],
)
def test_parse_returns_none_for_malformed_ids(cid: str) -> None:
    assert parse_client_order_id(cid) is None


def test_parse_with_empty_prefix_is_none() -> None:
    assert parse_client_order_id("d_BTCUSDT_1_1704067200_1", prefix="") is None


@pytest.mark.parametrize(
    "cid",
    [
        "grinder_d_BTCUSDT\n_1_1704067200_1",
        "grinder_d_BTCUSDT_1\n_1704067200_1",
        "grinder_d\n_BTCUSDT_1_1704067200_1",
    ],
)
def test_ids_with_embedded_newline_never_parse_nor_count_as_ours(cid: str) -> None:
    assert parse_client_order_id(cid) is None
    assert is_ours(cid) is False


# --- ownership -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cid",
    [
        "autoclose-1704067200123456",
        "autoclose-BTCUSDT-1",
        "adl_autoclose",
        "adl_autoclose-123",
        "settlement_autoclose-1704067200123",
        "settlement_autoclose-BTCUSDT_220325",
        "web_a1b2c3d4e5f6",
        "web_d_BTCUSDT_1_1704067200_1",
        "ios_x1y2z3",
        "android_abc123",
        "x-Q0W9E8R7",
        "manual_order_1",
        "myOrder123",
        "other_d_BTCUSDT_1_1704067200_1",
        "",
    ],
)
def test_liquidation_adl_settlement_manual_and_web_ids_are_never_ours(cid: str) -> None:
    assert ownership(cid) is Ownership.NO_GRINDER_PREFIX
    assert is_ours(cid) is False


def test_none_client_order_id_is_not_ours() -> None:
    assert ownership(None) is Ownership.NO_GRINDER_PREFIX
    assert is_ours(None) is False


@pytest.mark.parametrize(
    ("prefix", "cid"),
    [
        ("autoclose-", "autoclose-1704067200123456"),
        ("adl_", "adl_autoclose"),
        ("adl_", "adl_autoclose-123"),
        ("settlement_", "settlement_autoclose-1704067200123"),
    ],
)
def test_exchange_generated_ids_are_not_ours_even_under_a_colliding_prefix(
    prefix: str, cid: str
) -> None:
    allow = frozenset({"autoclose", "d"})
    assert is_ours(cid, prefix=prefix, strategy_allowlist=allow) is False


def test_our_default_strategy_is_ours() -> None:
    assert ownership("grinder_d_BTCUSDT_1_1704067200_1") is Ownership.OURS
    assert is_ours("grinder_d_BTCUSDT_1_1704067200_1") is True


def test_other_strategy_with_our_prefix_is_strategy_not_allowed() -> None:
    cid = "grinder_x_BTCUSDT_1_1704067200_1"
    assert ownership(cid) is Ownership.STRATEGY_NOT_ALLOWED
    assert is_ours(cid) is False


def test_allowlist_admits_listed_strategies_only() -> None:
    allow = frozenset({"d", "x"})
    assert is_ours("grinder_x_BTCUSDT_1_1704067200_1", strategy_allowlist=allow) is True
    assert is_ours("grinder_d_BTCUSDT_1_1704067200_1", strategy_allowlist=allow) is True
    assert (
        ownership("grinder_y_BTCUSDT_1_1704067200_1", strategy_allowlist=allow)
        is Ownership.STRATEGY_NOT_ALLOWED
    )


def test_empty_allowlist_makes_nothing_ours() -> None:
    assert (
        ownership("grinder_d_BTCUSDT_1_1704067200_1", strategy_allowlist=frozenset())
        is Ownership.STRATEGY_NOT_ALLOWED
    )


def test_strategy_allowlist_is_case_sensitive() -> None:
    assert is_ours("grinder_D_BTCUSDT_1_1704067200_1") is False


def test_custom_prefix_ownership_does_not_accept_default_prefix() -> None:
    ours = gen(prefix="bot2_")
    default = gen()
    assert is_ours(ours, prefix="bot2_") is True
    assert is_ours(default, prefix="bot2_") is False
    assert is_ours(ours) is False


def test_ownership_values_are_the_block_reason_labels() -> None:
    assert Ownership.NO_GRINDER_PREFIX.value == "no_grinder_prefix"
    assert Ownership.STRATEGY_NOT_ALLOWED.value == "strategy_not_allowed"
    assert Ownership.OURS.value == "ours"


# --- properties ------------------------------------------------------------------------------

tokens = st.from_regex(r"[A-Za-z0-9]{1,4}", fullmatch=True)
symbols = st.from_regex(r"[A-Z0-9][A-Z0-9_]{0,13}", fullmatch=True)
prefixes = st.from_regex(r"[.A-Za-z0-9:/_-]{1,8}", fullmatch=True)
levels = st.one_of(st.integers(min_value=0, max_value=10**4), tokens)
timestamps = st.integers(min_value=0, max_value=2 * 10**9)
seqs = st.integers(min_value=0, max_value=10**6)


def generated_or_none(**fields: object) -> str | None:
    """``generate_client_order_id(**fields)``, or None where it refuses them."""
    try:
        return generate_client_order_id(**fields)  # type: ignore[arg-type]
    except ClientOrderIdError:
        return None


def assert_valid_binance_id(cid: str) -> None:
    assert len(cid) <= MAX_CLIENT_ORDER_ID_LEN, cid
    assert BINANCE_ID.match(cid), cid


@given(
    fields=st.fixed_dictionaries(
        {
            "prefix": prefixes,
            "strategy_id": tokens,
            "symbol": symbols,
            "level_id": levels,
            "ts_seconds": timestamps,
            "seq": seqs,
        }
    )
)
def test_property_generate_then_parse_round_trips_whenever_generation_succeeds(
    fields: dict[str, Any],
) -> None:
    cid = generated_or_none(**fields)
    assume(cid is not None)
    assert_valid_binance_id(cid)
    assert parse_client_order_id(cid, fields["prefix"]) == ParsedClientOrderId(
        **{**fields, "level_id": str(fields["level_id"])}
    )
    assert is_ours(
        cid, prefix=fields["prefix"], strategy_allowlist=frozenset({fields["strategy_id"]})
    )


@given(
    fields=st.fixed_dictionaries(
        {
            "prefix": st.text(max_size=12),
            "strategy_id": st.text(max_size=12),
            "symbol": st.text(max_size=20),
            "level_id": st.one_of(st.integers(), st.text(max_size=6)),
            "ts_seconds": st.integers(),
            "seq": st.integers(),
        }
    )
)
def test_property_generation_never_exceeds_36_chars_nor_emits_invalid_ids(
    fields: dict[str, Any],
) -> None:
    cid = generated_or_none(**fields)
    if cid is not None:
        assert_valid_binance_id(cid)


@given(
    strategy_id=tokens,
    symbol=symbols,
    level_id=levels,
    ts_seconds=timestamps,
    seq=seqs,
)
def test_property_id_over_limit_always_raises_never_truncates(
    strategy_id: str, symbol: str, level_id: int | str, ts_seconds: int, seq: int
) -> None:
    full = f"{DEFAULT_PREFIX}{strategy_id}_{symbol}_{level_id}_{ts_seconds}_{seq}"
    kwargs = {
        "strategy_id": strategy_id,
        "symbol": symbol,
        "level_id": level_id,
        "ts_seconds": ts_seconds,
        "seq": seq,
    }
    if len(full) > MAX_CLIENT_ORDER_ID_LEN:
        with pytest.raises(ClientOrderIdError, match=str(len(full))):
            generate_client_order_id(**kwargs)  # type: ignore[arg-type]
    else:
        assert generate_client_order_id(**kwargs) == full  # type: ignore[arg-type]


@given(cid=st.text(max_size=40))
def test_property_ids_without_our_prefix_are_never_ours(cid: str) -> None:
    assume(not cid.startswith(DEFAULT_PREFIX))
    assert parse_client_order_id(cid) is None
    assert ownership(cid) is Ownership.NO_GRINDER_PREFIX
