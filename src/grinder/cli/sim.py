"""``grinder sim serve``: the bundled Binance USDⓈ-M simulator as a local server."""

from __future__ import annotations

import click

from grinder.cli.errors import UsageError


@click.group("sim")
def sim() -> None:
    """The bundled Binance USDⓈ-M futures simulator."""


@sim.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to bind (0: any free port, printed at start).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the price walk.")
@click.option(
    "--symbols",
    default=None,
    metavar="SYM,SYM",
    help="Comma-separated symbols to list (default: the whole catalog).",
)
@click.option(
    "--tick-ms",
    type=click.IntRange(10, 60_000),
    default=200,
    show_default=True,
    help="Mark-price walk and matching interval in ms.",
)
def serve(host: str, port: int, seed: int, symbols: str | None, tick_ms: int) -> None:
    """Serve the REST paths, the user-data WebSocket and the /_sim/ control API.

    Credentials: GRINDER_SIM_API_KEY / GRINDER_SIM_API_SECRET (defaults
    grinder-sim-key / grinder-sim-secret). Runs until SIGINT or SIGTERM.
    """
    from grinder.exchange.simulator.server import run_forever
    from grinder.exchange.simulator.symbols import CATALOG

    names = None
    if symbols is not None:
        names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        unknown = [s for s in names if s not in CATALOG]
        if not names or unknown:
            raise UsageError(f"--symbols: unknown symbol(s) {unknown or symbols!r}")
    try:
        run_forever(host, port, seed, symbols=names, tick_interval_ms=tick_ms)
    except OSError as exc:
        raise UsageError(
            f"--host/--port: cannot listen on {host}:{port} ({exc.strerror})"
        ) from None
