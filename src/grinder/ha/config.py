"""HA settings: the ``[ha]`` table of the config file, and what the command line adds."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from grinder.ha.connection import DEFAULT_NAMESPACE, DEFAULT_TIMEOUT_S, check_namespace
from grinder.ha.elector import ElectorTimings
from grinder.reconcile.config import MAX_SECONDS, CheckedModel
from grinder.redaction import masked_repr

PosFloat = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False, strict=True)]
NonNegFloat = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False, strict=True)]


MAX_REDIS_TIMEOUT_S = 1.0
"""A Redis call runs on the service's event loop: the stop waits for it (D49)."""
MIN_SAFETY_MARGIN_MS = 50
"""The local lease deadline ends at least this long before the lease in Redis (D44)."""


class HaConfig(CheckedModel):
    """Lease timings and Redis behaviour (``[ha]`` in the config file).

    Defaults: a 10 s lease renewed every ~3.3 s, followers polling every 0.5 s
    (a dead leader is replaced within lease + 0.5 s), a 1 s safety margin, a
    250 ms Redis timeout.
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    lease_ttl_s: PosFloat = 10.0
    """How long a leadership lasts without renewal; a dead leader is replaced after it."""
    renew_interval_s: PosFloat | None = None
    """Renewal period of the leader (default: a third of the lease)."""
    retry_interval_s: PosFloat | None = None
    """How often a follower tries to acquire, and a failed renewal is retried
    (default: the renew interval, at most 0.5 s)."""
    safety_margin_s: NonNegFloat | None = None
    """The leader stops acting this long before its lease could expire in Redis
    (default: a tenth of the lease, at most 1 s)."""
    recovery_s: NonNegFloat | None = None
    """After Redis lost its data (new epoch), writes wait this long so every live
    instance can restore what it knows of today's budget (default: the lease TTL)."""
    redis_timeout_s: PosFloat = DEFAULT_TIMEOUT_S
    """Connect and read timeout of every Redis call; a timeout fails closed."""
    namespace: str = DEFAULT_NAMESPACE
    """Prefix of every key; instances of one deployment must share it."""

    @model_validator(mode="after")
    def _consistent(self) -> HaConfig:
        check_namespace(self.namespace, where="namespace")
        timings = self.timings()
        if self.redis_timeout_s * 1000 >= timings.renew_ms:
            raise ValueError("redis_timeout_s must be shorter than the renew interval")
        if self.redis_timeout_s > MAX_REDIS_TIMEOUT_S:
            raise ValueError(
                f"redis_timeout_s must be at most {MAX_REDIS_TIMEOUT_S:g} s: a Redis call "
                "that blocks longer would hold up the service's stop past its 5 s bound"
            )
        if timings.margin_ms < MIN_SAFETY_MARGIN_MS:
            raise ValueError(
                f"safety_margin_s must be at least {MIN_SAFETY_MARGIN_MS / 1000:g} s (a lease "
                f"of {self.lease_ttl_s:g} s gives {timings.margin_ms} ms): the margin is what "
                "covers the error of the measured exchange clock when a write's recvWindow "
                "ends at the lease's local deadline"
            )
        return self

    def timings(self) -> ElectorTimings:
        def ms(value: float | None) -> int | None:
            return None if value is None else round(value * 1000)

        return ElectorTimings(
            lease_ms=round(self.lease_ttl_s * 1000),
            renew_interval_ms=ms(self.renew_interval_s),
            retry_interval_ms=ms(self.retry_interval_s),
            safety_margin_ms=ms(self.safety_margin_s),
        ).check()

    @property
    def recovery_ms(self) -> int:
        if self.recovery_s is not None:
            return round(self.recovery_s * 1000)
        return round(self.lease_ttl_s * 1000)


def default_instance_id() -> str:
    """``<hostname>-<pid>``: unique per process, readable in logs."""
    host = socket.gethostname().split(".")[0] or "grinder"
    return f"{host}-{os.getpid()}"


@dataclass(frozen=True)
class HaSettings:
    """Everything needed to run one instance with HA on."""

    redis_url: str
    instance_id: str
    config: HaConfig

    def __repr__(self) -> str:
        return masked_repr(self)

    @property
    def namespace(self) -> str:
        return self.config.namespace
