"""The console's page model and HTML: hostile text from the exchange is escaped, a
standing rollback shows with its lift command, secrets never appear."""

from __future__ import annotations

import secrets
from dataclasses import replace

from grinder.console.page import Masker, console_page, incident_view
from grinder.console.render import render_console, render_incident, render_not_found
from grinder.incidents.records import Evidence, IncidentRecord
from grinder.reconcile.labels import IncidentCause
from grinder.reconcile.types import MismatchType
from grinder.redaction import redact_text, register_secret

HOSTILE = "<script>alert(1)</script>"


def record(subject: str = HOSTILE) -> IncidentRecord:
    return IncidentRecord(
        id="INC-AAAAAAAAAA",
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol="BTCUSDT",
        subject=subject,
        first_seen_ms=1_700_000_000_000,
        last_seen_ms=1_700_000_001_000,
        opened_run_id="r1",
        client_order_id=subject,
        cause=IncidentCause.MANUAL,
        evidence=(Evidence("fill", f"order {HOSTILE} filled", 1, (("clientOrderId", HOSTILE),)),),
    )


STATUS = {
    "venue": "sim",
    "mode": "dry_run",
    "armed": False,
    "ha": {"enabled": False, "leader": True},
    "budget": {"calls_remaining_day": 5},
    "settings": {
        "armed": {"value": False, "source": "operator", "by": "alice", "reason": "x"},
        "redis_url": {"value": "redis://user:hunter2@db.test:6379/0", "source": "env"},
    },
    "operator": {
        "rollbacks": ["disarm"],
        "words": [{"field": "armed", "value": False, "by": "alice", "at_ms": 1, "reason": "why"}],
    },
}


def test_an_order_id_with_a_script_from_the_exchange_is_escaped() -> None:
    view = incident_view(record(), "no remediation: alert_only", 1_700_000_002_000)
    html = render_console(console_page(STATUS, [view], [], 1_700_000_002_000))
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    one = render_incident(view, "now")
    assert HOSTILE not in one
    assert "&lt;script&gt;" in one
    assert HOSTILE not in render_not_found(f"no incident {HOSTILE!r}")


def test_a_standing_rollback_shows_who_why_and_the_lift_command() -> None:
    html = render_console(console_page(STATUS, [], [], 0))
    assert "disarm stands" in html
    assert "grinder control lift disarm" in html
    assert "alice" in html
    assert "why" in html
    assert 'http-equiv="refresh"' in html
    assert "<script" not in html  # no JavaScript at all
    assert "redis_url" in html
    assert "hunter2" not in html


def test_an_incident_shows_its_trades_and_whether_they_explain_it() -> None:
    from dataclasses import replace

    from grinder.incidents.records import TradeRow, TradesEvidence

    trades = TradesEvidence(
        fetched_ms=1_700_000_002_000,
        start_ms=1_699_999_400_000,
        end_ms=1_700_000_001_500,
        difference="0.05",
        explained=False,
        signed_sum="0.02",
        unexplained="0.03",
        trades=(TradeRow(41, 9001, "BUY", "0.02", "2000.5", "0.016", "USDT", 1_700_000_000_250),),
    )
    rec = replace(record("BOTH"), type=MismatchType.POSITION_NONZERO_UNEXPECTED, trades=trades)
    one = render_incident(incident_view(rec, "no remediation", 1_700_000_003_000), "now")
    assert "not explained: 1 trade(s) read sum to 0.02, short by 0.03 of the difference 0.05" in one
    row = (
        "<td>2023-11-14 22:13:20.250</td><td>BUY</td><td>0.02</td><td>2000.5</td>"
        "<td>0.016 USDT</td><td>9001</td><td>41</td>"
    )
    assert row in one
    explained = replace(trades, explained=True, signed_sum="0.05", unexplained="0")
    ok = render_incident(incident_view(replace(rec, trades=explained), "-", 1), "now")
    assert "explained fully: 1 trade(s) make up the difference 0.05" in ok
    assert "trades (" not in render_incident(incident_view(record(), "-", 1), "now")


def test_the_pages_masker_masks_as_redaction_does_each_time_it_is_asked() -> None:
    mask = Masker()
    texts = [
        "redis://user:hunter2@db.test:6379/0",
        "GET /fapi/v1/order?signature=abc123def&symbol=BTCUSDT",
        "token=s3cr3t-value heartbeat 2.0 s",
        "gate 8: grinder_d_BTCUSDT_1_1800000000_1 is ours",
        "",
    ]
    for text in texts * 2:  # the second time from the page's memory
        assert mask(text) == redact_text(text)
    assert "hunter2" not in mask(texts[0])
    assert "abc123def" not in mask(texts[1])
    assert mask.value(None) == "-"
    assert mask.value(True) == "true"


def test_a_secret_registered_after_a_page_is_masked_on_the_next_page() -> None:
    secret = f"later-{secrets.token_hex(8)}"
    rec = replace(record(subject="BOTH"), evidence=(Evidence("note", f"seen {secret}", 1, ()),))
    first = render_console(console_page(STATUS, [incident_view(rec, None, 1)], [], 1))
    assert secret in first  # not a secret yet
    register_secret(secret)
    second = render_console(console_page(STATUS, [incident_view(rec, None, 1)], [], 1))
    assert secret not in second
    # One masker per page: the views of one page share it, the next page has its own.
    mask = Masker()
    views = [incident_view(replace(rec, id=f"INC-{i:010d}"), None, 1, mask) for i in range(3)]
    assert all(secret not in v.evidence[0].summary for v in views)
