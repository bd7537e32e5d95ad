"""Operator tooling for a running service: the runbook-13 ceremony checker.

``sources`` reads what a running service exposes (its Prometheus text, a
Prometheus server's API, the mark price) and ``logscan`` its event log;
``checks`` defines the items (PASS / FAIL / MANUAL with evidence), the inputs and
where each setting is read; ``runtime`` what the service reports of its environment
and files (``/status`` → ``runtime``) and the items about those files; ``passive``
(stages 1-2) and ``active`` (stages 3-4) are runbook 13's checklists;
``stages.run_stage`` runs one and ``report`` prints it. The ``grinder ceremony`` and
``grinder gates`` commands (``grinder.cli``) wire them to the control socket.
"""
