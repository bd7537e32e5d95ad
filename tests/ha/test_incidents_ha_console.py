"""The console and ``grinder incidents`` through a failover: the new leader shows the same ledger.

Three service processes against one simulator and a real ``redis-server``. The deployment is
disarmed first (``grinder control disarm --redis-url``), so every incident stands and nothing
reaches the exchange; four drifts open incidents of four causes (an order of ours while no bot
heartbeats: ``bot_stopped``; an order with remediation's own id: ``remediation_order``; a
position bought by hand: ``manual``; one bought by another strategy: ``other_strategy``), then
the bot heartbeats. Three acknowledgements are given three ways (the leader's socket, a
follower's socket, straight into Redis). The leader is frozen and killed (``kill -9``); the
new leader's ``grinder incidents list --json`` and its console in headless Chromium show the
same incident ids with the same causes and the acknowledgements; so does the remaining
follower's console, which says it is a follower. Screenshots go under the test's ``tmp_path``.

A ledger kept per instance fails here: the new leader would list none of the old leader's
incidents (or its own, with other ids), and the acknowledgements given on one instance would
be missing on the others.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from grinder.clock import wall_clock_ms
from grinder.reconcile.identity import remediation_client_order_id
from grinder.reconcile.types import MismatchType
from tests.support.browser import headless_chromium
from tests.support.ids import ours
from tests.support.wait import wait_until, wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

NAMES = ("A", "B", "C")
ORPHAN = ours(1)
MANUAL = "web_3c5dm4etfEvSlDpirssF"
OTHER = "grinder_x_BTCUSDT_1_1704067200_1"
UNEXPECTED = MismatchType.ORDER_EXISTS_UNEXPECTED.value
NONZERO = MismatchType.POSITION_NONZERO_UNEXPECTED.value

# The page's incident cards, read in one script (the page reloads itself every few seconds).
CARDS_JS = """
return Array.from(document.querySelectorAll('#incidents article.incident')).map(a => [
  a.id, a.querySelector('.cause').textContent, a.innerText]);
"""


class Operator:
    """The ``grinder`` commands an operator types, against the cluster's instances."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def socket(self, name: str) -> str:
        return str(self.cluster.sockets / name / "grinder" / "control.sock")

    async def run(self, *args: str) -> str:
        proc = await asyncio.to_thread(self.cluster.cli.run, "grinder.cli", *args)
        assert proc.returncode == 0, f"grinder {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return str(proc.stdout)

    async def listed(self, name: str) -> dict[str, dict[str, Any]]:
        """``grinder incidents list --open --json`` on ``name``'s socket, by incident id."""
        out = await self.run("incidents", "list", "--open", "--json", "--socket", self.socket(name))
        return {i["id"]: i for i in json.loads(out)["incidents"]}

    async def status(self, name: str) -> dict[str, Any]:
        out = await self.run("control", "status", "--socket", self.socket(name))
        data: dict[str, Any] = json.loads(out)
        return data


def console_cards(browser: WebDriver, url: str, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """The console at ``url`` until it shows exactly ``wanted`` open incidents: id → (cause,
    the card's text)."""

    def cards() -> dict[str, tuple[str, str]] | None:
        browser.get(url)
        found = {i: (cause, text) for i, cause, text in browser.execute_script(CARDS_JS)}
        return found if set(found) == wanted else None

    found: dict[str, tuple[str, str]] = wait_until(cards, f"{url} shows {sorted(wanted)}", 30)
    return found


def page_text(browser: WebDriver, element_id: str) -> str:
    return str(browser.execute_script(f"return document.getElementById('{element_id}').innerText"))


async def test_the_new_leaders_console_and_list_show_the_ledger_through_a_kill_9(
    make_cluster: Any, tmp_path: Path
) -> None:
    cluster = await make_cluster(bot=False)
    op = Operator(cluster)
    await cluster.start(*NAMES)
    leader = await cluster.wait_leader()
    await op.run(
        "control", "disarm", "--redis-url", cluster.redis.url, "--reason", "failover drill"
    )
    for name in NAMES:
        await wait_until_async(
            lambda name=name: _rollbacks(op, name), f"{name} holds the disarm", 20
        )

    remediation = remediation_client_order_id(
        strategy_id="d", symbol="BTCUSDT", ts_seconds=wall_clock_ms() // 1000, seq=7
    )
    await cluster.place_orphan(ORPHAN)  # no bot heartbeats yet: bot_stopped
    await cluster.place_orphan(remediation)
    for symbol, qty, cid in (("ETHUSDT", "0.05", MANUAL), ("BTCUSDT", "0.002", OTHER)):
        body = {"symbol": symbol, "quantity": qty, "clientOrderId": cid}
        await cluster.sim_call("POST", "/positions", body)
    causes = {
        (UNEXPECTED, "BTCUSDT", ORPHAN): "bot_stopped",
        (UNEXPECTED, "BTCUSDT", remediation): "remediation_order",
        (NONZERO, "ETHUSDT", "BOTH"): "manual",
        (NONZERO, "BTCUSDT", "BOTH"): "other_strategy",
    }

    async def leader_lists_all() -> dict[str, dict[str, Any]] | None:
        listed = await op.listed(leader)
        keys = {(i["type"], i["symbol"], i["subject"]): i for i in listed.values()}
        return listed if set(keys) == set(causes) else None

    before = await wait_until_async(leader_lists_all, "the leader's four incidents", 30)
    by_key = {(i["type"], i["symbol"], i["subject"]): i for i in before.values()}
    assert {k: i["cause"] for k, i in by_key.items()} == causes
    ids = {cause: by_key[k]["id"] for k, cause in causes.items()}
    cluster.start_bot()  # gate E opens; the disarm still blocks every write

    followers = [n for n in NAMES if n != leader]
    acks = {
        ids["manual"]: ("oncall-a", "sold by hand on the web", ["--socket", op.socket(leader)]),
        ids["bot_stopped"]: ("oncall-b", "bot restarted", ["--socket", op.socket(followers[0])]),
        ids["other_strategy"]: ("oncall-c", "strategy x told", ["--redis-url", cluster.redis.url]),
    }
    for incident_id, (by, note, where) in acks.items():
        await op.run("incidents", "ack", incident_id, "--by", by, "--note", note, *where)
    acked = await op.listed(leader)
    assert {i: acked[i]["ack_by"] for i in acks} == {i: a[0] for i, a in acks.items()}

    # --- kill -9 of the leader (frozen first: no hand-over of any kind) -----------------------
    cluster.instances[leader].signal(signal.SIGSTOP)
    cluster.instances[leader].kill()
    new_leader = await cluster.wait_leader(timeout_s=15, exclude=leader)
    follower = next(n for n in followers if n != new_leader)

    after = await op.listed(new_leader)
    assert {i: s["cause"] for i, s in after.items()} == {i: s["cause"] for i, s in before.items()}
    assert {i: after[i]["ack_by"] for i in acks} == {i: a[0] for i, a in acks.items()}
    assert after[ids["remediation_order"]]["ack_by"] is None
    for incident_id, (by, note, _where) in acks.items():
        shown = json.loads(
            await op.run(
                "incidents", "show", incident_id, "--json", "--socket", op.socket(new_leader)
            )
        )
        assert (shown["ack"]["by"], shown["ack"]["note"]) == (by, note)
    assert await op.listed(follower) == after

    with headless_chromium(width=1000, height=1800) as browser:

        def look(name: str) -> dict[str, tuple[str, str]]:
            url = cluster.instances[name].metrics_url.removesuffix("/metrics") + "/console"
            return console_cards(browser, url, set(before))

        for name, role in ((new_leader, "the leader"), (follower, "a follower")):
            cards = await asyncio.to_thread(look, name)
            assert {i: c for i, (c, _text) in cards.items()} == {
                i: s["cause"] for i, s in before.items()
            }, name
            for incident_id, (by, note, _where) in acks.items():
                assert f"acknowledged: {by}: {note}" in cards[incident_id][1], (name, incident_id)
            assert "acknowledged: -" in cards[ids["remediation_order"]][1], name
            leadership = await asyncio.to_thread(page_text, browser, "leader")
            assert f"this instance is {role}" in leadership, (name, leadership)
            assert f"instance_id {name}" in leadership, (name, leadership)
            assert "disarm stands" in await asyncio.to_thread(page_text, browser, "rollbacks")
            shot = tmp_path / f"console-{role.split()[1]}-{name}.png"
            await asyncio.to_thread(browser.save_screenshot, str(shot))
            print(f"screenshot: {shot}")

    assert (
        list(cluster.sim.exchange.write_log.records) == []
    )  # disarmed: nothing reached the exchange


async def _rollbacks(op: Operator, name: str) -> bool:
    return (await op.status(name))["operator"]["rollbacks"] == ["disarm"]
