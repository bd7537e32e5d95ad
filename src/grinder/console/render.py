"""The console's HTML: Jinja2 templates shipped in ``templates/``, autoescape always on."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from grinder.console.page import ConsolePage, IncidentView


@cache
def environment() -> Environment:
    # autoescape=True for every template, whatever its name: every value is untrusted text.
    # auto_reload=False: the templates ship with the package; no stat() of each file at
    # every include (a page of N incidents includes the card N times).
    return Environment(
        auto_reload=False,
        loader=PackageLoader("grinder.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_console(page: ConsolePage) -> str:
    return environment().get_template("console.html").render(page=page)


def render_incident(incident: IncidentView, generated: str) -> str:
    return environment().get_template("incident.html").render(inc=incident, generated=generated)


def render_not_found(message: str, title: str = "not found") -> str:
    """One line saying what could not be shown and why (``title``: the page's title)."""
    return environment().get_template("not_found.html").render(message=message, title=title)
