"""Options several commands share: an optional FILE, an optional URL, the service's /metrics,
a number of seconds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from grinder.ceremony.sources import DEFAULT_METRICS_URL
from grinder.reconcile.config import ConfigError, check_http_url, seconds_problem
from grinder.redaction import register_url

F = TypeVar("F", bound=Callable[..., object])


def file_option(*decls: str, help: str | None = None) -> Callable[[F], F]:
    """An optional path to a file (not a directory), shown as FILE."""
    return click.option(
        *decls, type=click.Path(dir_okay=False), default=None, metavar="FILE", help=help
    )


class Seconds(click.ParamType[float, Any]):
    """A finite number of seconds: > 0 (or >= 0 with ``allow_zero``), at most ``MAX_SECONDS``
    (``seconds_problem``).

    ``click.FloatRange`` lets ``inf`` and ``nan`` through (``float()`` accepts them).
    """

    name = "seconds"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = math.nan
        problem = seconds_problem(number, allow_zero=self.allow_zero)
        if problem is not None:
            self.fail(f"{problem}, got {value!r}.", param, ctx)
        return number


def url_option(*decls: str, help: str | None = None, http: bool = True) -> Callable[[F], F]:
    """An optional URL, shown as URL; with ``http`` it must be http(s)://host[:port][/path]
    (exit 2 otherwise). Its password is registered at once (``grinder.redaction``): masked
    in every output, whatever goes wrong next."""

    def accept(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        register_url(value)
        where = param.opts[0] if param.opts else str(param.name)
        if not value.strip():
            raise ConfigError(f"{where}: expected a value, got {value!r}")
        if http:
            check_http_url(value, where)
        return value

    return click.option(*decls, default=None, metavar="URL", help=help, callback=accept)


metrics_url_option = url_option(
    "--metrics-url",
    help="The service's /metrics (default: the URL its /status reports, else "
    f"{DEFAULT_METRICS_URL}).",
)


def metrics_url_of(metrics_url: str | None, status: Mapping[str, Any] | None) -> str:
    """``--metrics-url``, else the URL the service's /status reports, else the default."""
    return metrics_url or (status or {}).get("metrics_url") or DEFAULT_METRICS_URL
