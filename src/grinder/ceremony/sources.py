"""Reading a running service from outside: metrics text, Prometheus API, mark price.

Plain blocking HTTP (``urllib``) with a timeout: these are one-shot operator
commands. Every failure is a ``SourceError`` whose message names the URL (its
password masked) and what went wrong, for use as a check's evidence. A URL with
user info (``http://user:password@host:9090``) is read with HTTP basic
authentication.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from grinder.redaction import mask_secrets
from grinder.service.defaults import DEFAULT_METRICS_PORT

DEFAULT_METRICS_URL = f"http://localhost:{DEFAULT_METRICS_PORT}/metrics"
DEFAULT_TIMEOUT_S = 5.0


class SourceError(RuntimeError):
    """A source could not be read; the message is the evidence (credentials masked)."""

    def __init__(self, message: str) -> None:
        super().__init__(mask_secrets(message))


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Scrape:
    """One read of a ``/metrics`` endpoint."""

    url: str
    samples: tuple[Sample, ...]
    families: frozenset[str] = field(default_factory=frozenset)
    """Metric family names declared (``# TYPE``), including those with no sample yet."""

    def series(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the first series of ``name`` matching ``labels``; None when absent."""
        found = self.series(name, **labels)
        return found[0].value if found else None

    def total(self, name: str, **labels: str) -> float | None:
        """Sum over every series of ``name`` matching ``labels``; None when there is none."""
        found = self.series(name, **labels)
        return sum(s.value for s in found) if found else None

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {s.labels.get(label, ""): s.value for s in self.series(name)}

    def names(self) -> set[str]:
        """Every sample name and declared family name (what a query can select)."""
        return {s.name for s in self.samples} | set(self.families)

    def started_at(self) -> float | None:
        """Unix time the service's counters were created: when the service started."""
        created = [s.value for s in self.samples if s.name == "grinder_reconcile_runs_created"]
        return min(created) if created else None


def parse_scrape(url: str, text: str) -> Scrape:
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise SourceError(f"{url}: not Prometheus text format ({exc})") from None
    samples = tuple(
        Sample(s.name, dict(s.labels), float(s.value)) for fam in families for s in fam.samples
    )
    declared = frozenset(fam.name for fam in families)
    return Scrape(url, samples, declared)


def _basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its user info, and the ``Authorization`` header the user info stood
    for (urllib does not send it by itself)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    host = parts.netloc.rpartition("@")[2]
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    user, password = (urllib.parse.unquote(x or "") for x in (parts.username, parts.password))
    pair = f"{user}:{password}"
    return bare, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def http_get(url: str, *, timeout: float = DEFAULT_TIMEOUT_S, accept: str = "*/*") -> str:
    """The body of ``GET url``; user info in ``url`` is sent as HTTP basic authentication."""
    bare, auth = _basic_auth(url)
    request = urllib.request.Request(bare, headers={"Accept": accept, **auth})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise SourceError(f"{url}: cannot connect ({exc.reason})") from None
    except (TimeoutError, OSError) as exc:
        raise SourceError(f"{url}: {exc}") from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{url}: response is not UTF-8 text") from None


def fetch_scrape(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Scrape:
    return parse_scrape(url, http_get(url, timeout=timeout, accept="text/plain"))


def fetch_json(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    text = http_get(url, timeout=timeout, accept="application/json")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SourceError(f"{url}: response is not JSON") from None


# --- a Prometheus server --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedRule:
    name: str
    state: str
    """inactive, pending or firing."""
    health: str
    """ok, err or unknown (evaluation health)."""
    group: str
    file: str


def _api(base_url: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    url = base_url.rstrip("/") + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    data = fetch_json(url)
    if not isinstance(data, dict) or data.get("status") != "success":
        error = data.get("error") if isinstance(data, dict) else None
        raise SourceError(f"{url}: Prometheus API error ({error or 'unexpected answer'})")
    return data.get("data")


def fetch_alert_rules(prometheus_url: str) -> dict[str, LoadedRule]:
    """The alerting rules a Prometheus server has loaded, by alert name."""
    data = _api(prometheus_url, "/api/v1/rules", {"type": "alert"})
    rules: dict[str, LoadedRule] = {}
    groups = data.get("groups", []) if isinstance(data, dict) else []
    for group in groups:
        for rule in group.get("rules", []):
            if rule.get("type") != "alerting":
                continue
            rules[str(rule.get("name"))] = LoadedRule(
                name=str(rule.get("name")),
                state=str(rule.get("state", "")),
                health=str(rule.get("health", "")),
                group=str(group.get("name", "")),
                file=str(group.get("file", "")),
            )
    return rules


def query_vector(prometheus_url: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query's result vector as (labels, value) pairs."""
    data = _api(prometheus_url, "/api/v1/query", {"query": promql})
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise SourceError(f"{prometheus_url}: query {promql!r} did not return a vector")
    out: list[tuple[dict[str, str], float]] = []
    for item in data.get("result", []):
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not math.isnan(value):
            out.append((dict(item.get("metric", {})), value))
    return out


def instance_of(metrics_url: str) -> str:
    """The ``instance`` label Prometheus gives a target scraped at ``metrics_url``."""
    parts = urllib.parse.urlsplit(metrics_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


# --- the exchange ---------------------------------------------------------------------


def fetch_mark_price(venue_url: str, symbol: str) -> Decimal:
    """``GET /fapi/v1/premiumIndex?symbol=…`` (public, weight 1): the mark price."""
    url = (
        venue_url.rstrip("/")
        + "/fapi/v1/premiumIndex?"
        + urllib.parse.urlencode({"symbol": symbol})
    )
    data = fetch_json(url)
    raw = data.get("markPrice") if isinstance(data, dict) else None
    try:
        price = Decimal(str(raw))
    except InvalidOperation:
        raise SourceError(f"{url}: no markPrice in the answer ({data!r:.200})") from None
    if not price.is_finite() or price <= 0:
        raise SourceError(f"{url}: markPrice {raw!r} is not a positive price")
    return price


def fmt_number(value: float | None) -> str:
    """Metric values as an operator reads them: 42, not 42.0."""
    if value is None:
        return "absent"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"  # as Prometheus writes it
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def fmt_series(name: str, labels: Mapping[str, str] | None = None) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"
