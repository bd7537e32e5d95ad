"""``grinder expected adopt``: take the exchange's current state as the expected baseline.

It writes where the service reads: the SQLite file of ``--expected-db`` /
``GRINDER_EXPECTED_DB`` when one is named (created when it does not exist: adopting is
the explicit choice to start one), else, with ``--redis-url`` / ``GRINDER_REDIS_URL``, the
shared expected state in Redis (namespace from ``--redis-namespace`` /
``GRINDER_REDIS_NAMESPACE`` / the config's ``[ha]``).

Adoption records a baseline; it is not a bot. It leaves the bot heartbeat as it is, so
it never makes the expected state live: remediation stays blocked
(``expected_state_stale``) until the bot itself writes or heartbeats.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from grinder.cli.errors import UsageError
from grinder.cli.options import file_option, url_option
from grinder.clock import wall_clock_ms
from grinder.exchange.binance.credentials import Credentials
from grinder.ha.connection import RedisConnection
from grinder.service.defaults import VENUES, Venue
from grinder.service.options import ServiceFlags, ServiceOptions, resolve
from grinder.service.preflight import check_expected_db
from grinder.service.venue import check_venue, connect_venue
from grinder.state.adopt import AdoptReport, adopt_baseline
from grinder.state.expected import MemoryExpectedStore
from grinder.state.redis_store import RedisExpectedStore
from grinder.state.sqlite import SqliteExpectedStore


@click.group("expected")
def expected() -> None:
    """The bot's expected state (the SQLite file or the Redis keys a bot records into)."""


@expected.command("adopt")
@file_option("--expected-db", help="The expected-state file [env GRINDER_EXPECTED_DB].")
@url_option(
    "--redis-url",
    help="Without --expected-db: the shared expected state in this Redis [env GRINDER_REDIS_URL].",
    http=False,
)
@click.option(
    "--redis-namespace",
    default=None,
    help="Key prefix in Redis [env GRINDER_REDIS_NAMESPACE; default: the config's, grinder].",
)
@click.option("--venue", type=click.Choice(VENUES), default=None, help="[env GRINDER_VENUE]")
@url_option("--venue-url", help="REST base URL of the venue.")
@file_option(
    "--config",
    help="TOML config: the client order id prefix and strategy allowlist that make an order ours.",
)
@click.option("--yes", is_flag=True, help="Write without asking.")
def adopt(
    expected_db: str | None,
    redis_url: str | None,
    redis_namespace: str | None,
    venue: Venue | None,
    venue_url: str | None,
    config: str | None,
    yes: bool,
) -> int:
    """Record the exchange's open orders of ours and its positions as expected.

    Orders that are not ours are never recorded. Nothing is sent to the exchange. The
    file is created when it does not exist. Adoption is not a bot's write: remediation
    stays blocked (expected_state_stale) until the bot writes or heartbeats.
    """
    opts = _adopt_options(
        ServiceFlags(
            venue=venue,
            venue_url=venue_url,
            config=config,
            expected_db=expected_db,
            redis_url=redis_url,
            redis_namespace=redis_namespace,
        )
    )
    credentials = check_venue(opts, os.environ)
    if not yes and not sys.stdin.isatty():
        raise UsageError("refusing to write without --yes when not asked at a terminal")
    return asyncio.run(_adopt_from_venue(opts, credentials, yes=yes))


def _adopt_options(flags: ServiceFlags) -> ServiceOptions:
    """The settings resolved as the service resolves them, with a store to write to (the
    file is checked, and may be created) and, for the simulator, its URL."""
    opts = resolve(flags, os.environ)
    if opts.expected_db is None and opts.ha is None:
        raise UsageError(
            "--expected-db (or GRINDER_EXPECTED_DB) or --redis-url (or GRINDER_REDIS_URL) "
            "is required"
        )
    if opts.expected_db is not None:
        check_expected_db(opts.expected_db, opts.expected_db_where, create=True)
    if opts.venue == "sim" and opts.venue_url is None:
        raise UsageError("--venue sim needs --venue-url of a running simulator (grinder sim serve)")
    return opts


async def _adopt_from_venue(opts: ServiceOptions, credentials: Credentials, *, yes: bool) -> int:
    """Show what adoption would change (worked out on a copy), ask unless ``yes``, then
    adopt into the store; 1 when the operator declines (nothing written), else 0."""
    conn = await connect_venue(opts, credentials, clock=wall_clock_ms)
    try:
        await conn.rest.sync_time()
        with _open_store(opts) as (store, where):
            preview = await adopt_baseline(
                _copy_in_memory(store), conn.port, opts.reconcile, wall_clock_ms()
            )
            click.echo("Would change the expected state as follows:")
            _print_report(preview)
            if not yes and not click.confirm(f"Write this to {where}?"):
                click.echo("Nothing written.")
                return 1
            report = await adopt_baseline(store, conn.port, opts.reconcile, wall_clock_ms())
            click.echo("Written:")
            _print_report(report)
            click.echo(
                "The bot heartbeat is left as it was: remediation acts on this baseline "
                "only once the bot writes or heartbeats (expected_state_stale until then)."
            )
            return 0
    finally:
        await conn.close()


def _copy_in_memory(store: SqliteExpectedStore | RedisExpectedStore) -> MemoryExpectedStore:
    """The store's orders and positions in memory, for a preview that writes nothing."""
    copy = MemoryExpectedStore(max_orders=max(len(store) * 2, 1000))
    for order in store.orders():
        copy.record_order(order)
    for pos in store.positions():
        copy.set_position(pos.symbol, pos.qty, pos.updated_ts_ms, pos.position_side)
    return copy


@contextmanager
def _open_store(
    opts: ServiceOptions,
) -> Iterator[tuple[SqliteExpectedStore | RedisExpectedStore, str]]:
    """The store the service reads (the file when one is named, else Redis) and its name."""
    if opts.expected_db is not None:
        with SqliteExpectedStore(opts.expected_db) as sqlite:
            yield sqlite, f"the expected-state file {opts.expected_db}"
        return
    assert opts.ha is not None
    cfg = opts.ha.config
    conn = RedisConnection(
        opts.ha.redis_url,
        namespace=cfg.namespace,
        timeout_s=cfg.redis_timeout_s,
        client_name="grinder-expected-adopt",
    )
    try:
        store = RedisExpectedStore(conn)
        yield store, f"the {store.where}"
    finally:
        conn.close()


def _print_report(report: AdoptReport) -> None:
    click.echo(report.summary_line())
    for cid in report.adopted_orders:
        click.echo(f"  adopt order      {cid}")
    for cid, why in report.skipped_foreign_orders:
        click.echo(f"  leave alone      {cid} ({why.value})")
    for cid in report.ended_orders:
        click.echo(f"  mark ended       {cid}")
    for cid in report.kept_recent_orders:
        click.echo(f"  keep (recent)    {cid}")
    for pos in report.adopted_positions:
        click.echo(f"  adopt position   {pos.symbol} {pos.position_side.value} {pos.qty}")
    for symbol, side in report.zeroed_positions:
        click.echo(f"  zero position    {symbol} {side.value}")
