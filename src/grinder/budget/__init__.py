"""The remediation budget: calls and notional per run and per UTC day, in one package.

* ``ledger`` -- the pure part: a day's usage (``BudgetState``) and its file form, a run's
  (``RunBudget``), the budget gate (``budget_verdict``), the day and clock rules.
* ``stores`` -- where the day's usage lives, behind one ``BudgetStore`` interface: memory,
  a file (``BUDGET_STATE_PATH``); ``redis_store`` (with ``redis_scripts``) the shared,
  fenced one of HA.
* ``tracker`` -- ``BudgetTracker``: the usage while a process runs; what the executor
  checks and reserves, the metrics and ``/status`` read.
* ``lifecycle`` -- loaded at start (with its warnings), reset on request, saved at exit.
"""
