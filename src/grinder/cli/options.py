"""Options several commands share: an optional FILE, an optional URL, the service's /metrics,
a number of seconds; the value types that name the flag or the variable a bad value came
from (``Given``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from grinder.ceremony.sources import DEFAULT_METRICS_URL
from grinder.config_sources import check_http_url, path_value, text_value
from grinder.reconcile.config import ConfigError, seconds_problem
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
    """An optional URL, shown as URL (the ``Url`` type: with ``http`` it must be
    http(s)://host[:port][/path], exit 2 otherwise)."""
    return click.option(*decls, type=Url(http=http), default=None, metavar="URL", help=help)


# --- values given by a flag or by its variable --------------------------------------------


@dataclass(frozen=True)
class Given:
    """Where a parameter's value came from: ``name`` is its flag, or its variable when
    click took the value from the environment (``variable``)."""

    name: str
    variable: bool

    @classmethod
    def of(cls, ctx: click.Context | None, param: click.Parameter | None) -> Given:
        if param is None:
            return cls("value", variable=False)
        name = param.name
        source = None if ctx is None or name is None else ctx.get_parameter_source(name)
        if source is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
            return cls(param.envvar, variable=True)
        return cls(param.opts[0] if param.opts else str(name), variable=False)

    def nonempty(self, text: str) -> str:
        """``text``, refused when empty or blank naming the flag or the variable."""
        if self.variable:
            return text_value(text, self.name)
        if not text.strip():
            raise ConfigError(f"{self.name}: expected a value, got {text!r}")
        return text


class Text(click.ParamType[str, Any]):
    """Any text but an empty or blank one."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return Given.of(ctx, param).nonempty(str(value))


class Url(Text):
    """A URL; its password is registered at once (``grinder.redaction``): masked in every
    output, whatever goes wrong next. With ``http`` it must be http(s)://host[:port][/path]."""

    name = "url"

    def __init__(self, *, http: bool) -> None:
        self.http = http

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        register_url(str(value))
        url = super().convert(value, param, ctx)
        return check_http_url(url, Given.of(ctx, param).name) if self.http else url


class FilePath(click.Path):
    """A path (to a file, not a directory, unless ``dir_okay``): empty is refused; a flag's
    value also passes click's check."""

    def __init__(self, *, dir_okay: bool = False) -> None:
        super().__init__(dir_okay=dir_okay, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path):
            return value
        given = Given.of(ctx, param)
        if given.variable:
            return path_value(str(value), given.name)
        return super().convert(given.nonempty(str(value)), param, ctx)


metrics_url_option = url_option(
    "--metrics-url",
    help="The service's /metrics (default: the URL its /status reports, else "
    f"{DEFAULT_METRICS_URL}).",
)


def metrics_url_of(metrics_url: str | None, status: Mapping[str, Any] | None) -> str:
    """``--metrics-url``, else the URL the service's /status reports, else the default."""
    return metrics_url or (status or {}).get("metrics_url") or DEFAULT_METRICS_URL
