"""The operator's standing word on a deployment's settings (docs/DECISIONS.md D57).

A rollback given on the control socket (``set action none``, ``set dry_run true``,
``disarm``, ``deny-mainnet``) and every other setting an operator gives there is a
*word*: a value with who gave it, when and why. The words of a deployment are one
document, the operator state, kept where every instance reads it before every write --
a file next to the budget state when the service runs alone, a Redis hash under the
deployment's namespace with HA -- and they stand through reload, SIGHUP, restart and
failover until an operator lifts them.

* ``state`` -- the document: words, stamps, the rollbacks, its JSON form (pure).
* ``decide`` -- what a command makes of a document, and whether a document read is
  the one this instance knew or a lost one (pure).
* ``merge`` -- the settings in force: the configured value of each setting, replaced
  by the operator's word on it (pure).
* ``stores`` -- where the document lives alone (a file; memory for an embedded service).

With HA the document lives in Redis: ``grinder.ha.operator``. The service's side (reading
it before every write, applying it, the control commands) is ``grinder.service.operator``.
"""
