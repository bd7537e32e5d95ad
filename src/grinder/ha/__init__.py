"""High availability on Redis: one leader acts, every instance detects and reports.

* ``connection.RedisConnection`` -- short timeouts, no retries, fail closed.
* ``elector.LeaderElector`` -- lease with TTL and renewal, fencing token.
* ``grinder.budget.redis_store.RedisBudgetStore`` -- the shared daily budget and
  cooldown anchor, reserved atomically together with the fencing check (the budget
  lives in its own package, ``grinder.budget``).
* ``grinder.state.redis_store.RedisExpectedStore`` -- the shared expected state.
* ``runtime.HaRuntime`` -- one instance's parts wired together (import it from
  ``grinder.ha.runtime``).

See docs/HA.md (the runbook) and docs/DECISIONS.md (D24-D29).
"""

from grinder.ha.config import HaConfig, HaSettings, default_instance_id
from grinder.ha.connection import RedisConnection, RedisUnavailable
from grinder.ha.elector import ElectorTimings, LeaderElector, LeadershipEvent, Lease
from grinder.ha.metrics import HaMetrics

__all__ = [
    "ElectorTimings",
    "HaConfig",
    "HaMetrics",
    "HaSettings",
    "LeaderElector",
    "LeadershipEvent",
    "Lease",
    "RedisConnection",
    "RedisUnavailable",
    "default_instance_id",
]
