"""The demo's settings: its markets and gates, timings, options and per-case results, and the
settings it hands to the reconcile service."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from grinder.config_sources import RuntimeEnv
from grinder.exchange.binance.rest import DEFAULT_WEIGHT_LIMIT
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.service.options import (
    SNAPSHOT_WEIGHT_SHARE,
    ServiceConfig,
    ServiceOptions,
)

SYMBOL = "BTCUSDT"  # the bot's market
OTHER = "ETHUSDT"  # where a position is opened by hand
SYMBOLS = (SYMBOL, OTHER)
QTY = Decimal("0.002")
HAND_POSITION = Decimal("0.050")
WIDTH = 104
RULE = "=" * 72
LIVE_GATES = {
    "RECONCILE_DRY_RUN": "0",
    "RECONCILE_ALLOW_ACTIVE": "1",
    "ARMED": "1",
    "ALLOW_MAINNET_TRADE": "1",
}
STAGE2_SETTINGS = (("action", "cancel_all"), ("allow_active_remediation", "true"))
"""What ``--ceremony`` has the operator change for runbook 13's stage 2 (dry_run stays true)."""
SERVICE_LOG = "service.log"
"""The demo's event log, in its run directory."""
ARTIFACTS = ("stdout.log", "audit.jsonl", "metrics.prom", "metrics_summary.json")


@dataclass(frozen=True)
class Timing:
    order_grace_ms: int
    position_grace_ms: int
    full_pass_s: float
    snapshot_s: float
    case_timeout_s: float

    @property
    def settle_s(self) -> float:
        """How long "nothing happens" is watched: the longer grace period and three passes."""
        return max(self.order_grace_ms, self.position_grace_ms) / 1000 + 3 * self.full_pass_s


NORMAL = Timing(1000, 800, full_pass_s=0.5, snapshot_s=1.0, case_timeout_s=8.0)
FAST = Timing(500, 300, full_pass_s=0.25, snapshot_s=1.0, case_timeout_s=6.0)


@dataclass(frozen=True)
class DemoOptions:
    live: bool = False
    seed: int = 1
    fast: bool = False
    artifacts_root: Path | None = None
    verbose: bool = False
    ceremony: bool = False
    hold_s: float | None = None  # --ceremony only: stop after this many seconds

    @property
    def timing(self) -> Timing:
        return FAST if self.fast else NORMAL

    @property
    def root(self) -> Path:
        return self.artifacts_root or Path(tempfile.gettempdir()) / "grinder-demo"


@dataclass
class CaseResult:
    key: str
    title: str
    expected: str
    observed: str
    latency_s: float | None
    verdict: str
    ok: bool
    why: str = ""


def service_options(opts: DemoOptions, venue_url: str) -> ServiceOptions:
    """The service's settings: dry-run with action=flatten, (``--live``) every gate open, or
    (``--ceremony``) runbook 13's stage 1: passive (action=none, dry-run, planning not allowed,
    not armed), the operator then opening stage 2 through the control socket."""
    t, live, ceremony = opts.timing, opts.live, opts.ceremony
    reconcile = ReconcileConfig(
        symbols=list(SYMBOLS),
        order_grace_ms=t.order_grace_ms,
        position_grace_ms=t.position_grace_ms,
        action=RemediationAction.NONE if ceremony else RemediationAction.FLATTEN,
        dry_run=not live,
        allow_active_remediation=live,
        cooldown_seconds=0.0,
        symbol_whitelist=list(SYMBOLS),
    )
    service = ServiceConfig(
        full_pass_interval_s=t.full_pass_s,
        min_snapshot_interval_s=t.snapshot_s,
        # The most the pacing rule allows (SNAPSHOT_WEIGHT_SHARE of the IP's weight): with
        # 9 weight a snapshot the minimum interval wins.
        snapshot_weight_per_minute=DEFAULT_WEIGHT_LIMIT * SNAPSHOT_WEIGHT_SHARE,
        sim_symbols=list(SYMBOLS),
    )
    return ServiceOptions(
        venue="sim",
        venue_url=venue_url,
        # a safety net: the demo stops the service long before (--ceremony: until stopped)
        duration_s=None if ceremony else 120.0,
        metrics_port=0,
        env=RuntimeEnv.from_env(LIVE_GATES if live else {}),
        reconcile=reconcile,
        service=service,
        armed=live,
        artifacts_dir=opts.root,
    )
