"""``[deadman]``: which symbols the exchange's countdown protects, and its timings.

Off by default. The rules (checked at start; a reload changes only ``enabled``):

* ``symbols`` is required when enabled -- no silent default: each is a symbol whose
  open orders the exchange cancels when the countdown ends unrenewed;
* the renewal fits well inside the countdown: ``renew_interval_s`` at most a third of
  ``countdown_s``, so two renewals in a row can fail before the switch trips;
* the renewals stay within ``WEIGHT_SHARE`` of the IP's request weight, counting the
  retries of failed ones (one every half renewal interval at worst);
* ``max_snapshot_age_s`` is at least the service's longest snapshot interval (checked
  with ``[service]`` by ``check_with_service``), or every gap between two snapshots
  would withhold the renewals;
* under HA, ``check_with_ha``: a failover hands over within the countdown -- the
  countdown exceeds the lease TTL (a dead leader is replaced after it) plus one renewal
  interval plus ``HANDOVER_MARGIN_S``.

The rules that need the rest of the settings apply whenever the switch can run
(``can_run``: enabled, or symbols listed -- a reload can switch a listed switch on).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator

from grinder.exchange.binance.futures_port import COUNTDOWN_WEIGHT
from grinder.exchange.binance.rest import DEFAULT_WEIGHT_LIMIT
from grinder.reconcile.config import CheckedModel

WEIGHT_SHARE = 0.10
"""The most of the IP's request weight the renewals may ever spend."""
RETRY_FACTOR = 2
"""A failed renewal is sent again half a renewal interval later: at worst twice the rate."""
MIN_COUNTDOWN_S = 3.0
"""Binance checks its countdowns about every 10 ms but advises against precise or small
ones; below 3 s a single slow round trip could trip the switch."""
MAX_COUNTDOWN_S = 86_400.0
HANDOVER_MARGIN_S = 2.0
"""Slack for the new leader's first snapshot and renewal after it takes over."""

Seconds = Annotated[float, Field(gt=0, le=MAX_COUNTDOWN_S, allow_inf_nan=False, strict=True)]


class DeadmanConfig(CheckedModel):
    """The ``[deadman]`` table of the config file."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    enabled: StrictBool = False
    symbols: list[str] = Field(default_factory=list)
    """The symbols whose open orders the exchange cancels when the countdown ends."""
    countdown_s: Seconds = 120.0
    """The countdown each renewal sets (Binance's example: 120 s renewed every 30 s)."""
    renew_interval_s: Seconds = 30.0
    """How often the leader renews while the deployment is healthy."""
    max_snapshot_age_s: Seconds = 120.0
    """Renewals are withheld once the last REST snapshot is older (runbook 13: < 120 s)."""

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        for symbol in value:
            if not symbol or not symbol.isascii() or not symbol.isalnum() or not symbol.isupper():
                raise ValueError(f"expected upper-case symbols such as BTCUSDT, got {symbol!r}")
        if len(set(value)) != len(value):
            raise ValueError("a symbol is listed twice")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeadmanConfig:
        if self.countdown_s < MIN_COUNTDOWN_S:
            raise ValueError(
                f"countdown_s must be at least {MIN_COUNTDOWN_S:g} s, got {self.countdown_s:g}"
            )
        if self.renew_interval_s * 3 > self.countdown_s:
            raise ValueError(
                f"renew_interval_s ({self.renew_interval_s:g} s) must be at most a third of "
                f"countdown_s ({self.countdown_s:g} s): two failed renewals in a row must not "
                "trip the switch"
            )
        if self.enabled and not self.symbols:
            raise ValueError("symbols: list the symbols the switch protects when enabled")
        spent = self.weight_per_minute()
        allowed = DEFAULT_WEIGHT_LIMIT * WEIGHT_SHARE
        if spent > allowed:
            raise ValueError(
                f"renew_interval_s: {len(self.symbols)} symbol(s) renewed every "
                f"{self.renew_interval_s:g} s may spend {spent:.0f} request weight a minute "
                f"with retries, over {allowed:.0f} ({WEIGHT_SHARE:.0%} of the IP's "
                f"{DEFAULT_WEIGHT_LIMIT}): renew less often or protect fewer symbols"
            )
        return self

    def weight_per_minute(self) -> float:
        """The most request weight a minute the renewals can spend, retries included."""
        return len(self.symbols) * COUNTDOWN_WEIGHT * RETRY_FACTOR * 60 / self.renew_interval_s

    @property
    def can_run(self) -> bool:
        """Whether the service runs the switch: enabled, or symbols listed (a reload may then
        switch it on), so every rule that needs the rest of the settings applies."""
        return self.enabled or bool(self.symbols)

    @property
    def countdown_ms(self) -> int:
        return round(self.countdown_s * 1000)

    @property
    def renew_interval_ms(self) -> int:
        return round(self.renew_interval_s * 1000)

    @property
    def max_snapshot_age_ms(self) -> int:
        return round(self.max_snapshot_age_s * 1000)

    def check_with_service(self, max_snapshot_interval_s: float) -> str | None:
        """Why this table does not fit the service's snapshot pacing, or None."""
        if self.can_run and self.max_snapshot_age_s < max_snapshot_interval_s:
            return (
                f"max_snapshot_age_s ({self.max_snapshot_age_s:g} s) is shorter than "
                f"[service] max_snapshot_interval_s ({max_snapshot_interval_s:g} s): every gap "
                "between two snapshots would withhold the renewals"
            )
        return None

    def check_with_ha(self, lease_ttl_s: float) -> str | None:
        """Why a failover could trip the switch with these timings, or None."""
        needed = lease_ttl_s + self.renew_interval_s + HANDOVER_MARGIN_S
        if self.can_run and self.countdown_s <= needed:
            return (
                f"countdown_s ({self.countdown_s:g} s) must exceed the lease TTL "
                f"({lease_ttl_s:g} s) + renew_interval_s ({self.renew_interval_s:g} s) + "
                f"{HANDOVER_MARGIN_S:g} s, or the switch could trip during a failover"
            )
        return None
