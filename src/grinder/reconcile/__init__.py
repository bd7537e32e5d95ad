"""The core: detection, triage, routing, the gate chain, the flatten's order, the domain
types and labels, the settings and their rules -- decisions over the inputs handed in.

Nothing here reads a file, the environment or a clock, logs, or opens a connection: a
module imports only pure standard modules, pydantic, this package and the few pure
modules outside it that ``tests/unit/test_core_purity.py`` lists (the test holds the rule;
docs/DECISIONS.md D1). What reads, reserves and sends is the shell: ``grinder.remediation``
(the executor, the runner), ``grinder.reporting`` (logs, metrics, audit, the report),
``grinder.config_sources`` (the environment, TOML files), ``grinder.exchange``,
``grinder.state``, ``grinder.ha``, ``grinder.service``. One module is not held yet:
``budget``, whose file store is leaving the core for a package of its own.
"""
