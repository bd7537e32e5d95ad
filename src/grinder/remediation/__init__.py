"""Remediation, the shell that carries the core's decisions out: it reads, reserves and sends.

* ``executor`` -- ``RemediationExecutor``: the gates' inputs read now (the settings in
  force, the wall clock, the environment's gate 5, leadership), the budget reserved,
  every write authorized at the wire and sent through the ``ExchangePort``.
* ``flatten_action`` -- one flatten: read the position and prices, decide
  (``grinder.reconcile.flatten``), reserve, send, send the rest.
* ``runner`` -- ``ReconcileRunner``: one run of the pipeline (detect, route, remediate,
  report).

What to do is decided in the core (``grinder.reconcile``: the engine, the routing, the
gate table); nothing here decides it a second time.
"""
