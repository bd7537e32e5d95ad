"""Reporting, the shell's side of every outcome: what a run found and did, told to the logs,
the metrics, the audit file and the incident ledger.

* ``report`` -- the ``Reporter``: a run's report; each result counted, and logged and
  audited when it is new or changes (the core's ``grinder.reconcile.repeats`` decides).
* ``logs`` -- the JSON log lines and their handler.
* ``metrics`` -- the Prometheus series and the metrics text (``exposition``).
* ``audit`` -- the JSONL audit file.
"""
