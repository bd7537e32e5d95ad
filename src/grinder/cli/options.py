"""Options several commands share: an optional FILE, an optional URL, the service's /metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from grinder.ceremony.sources import DEFAULT_METRICS_URL

F = TypeVar("F", bound=Callable[..., object])


def file_option(*decls: str, help: str | None = None) -> Callable[[F], F]:
    """An optional path to a file (not a directory), shown as FILE."""
    return click.option(
        *decls, type=click.Path(dir_okay=False), default=None, metavar="FILE", help=help
    )


def url_option(*decls: str, help: str | None = None) -> Callable[[F], F]:
    """An optional URL, shown as URL."""
    return click.option(*decls, default=None, metavar="URL", help=help)


metrics_url_option = url_option(
    "--metrics-url",
    help="The service's /metrics (default: the URL its /status reports, else "
    f"{DEFAULT_METRICS_URL}).",
)


def metrics_url_of(metrics_url: str | None, status: Mapping[str, Any] | None) -> str:
    """``--metrics-url``, else the URL the service's /status reports, else the default."""
    return metrics_url or (status or {}).get("metrics_url") or DEFAULT_METRICS_URL
