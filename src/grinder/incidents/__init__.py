"""The incident ledger: every mismatch an incident with an id, a cause, its evidence and an end.

Core (pure): ``records`` (the frozen record), ``record_json`` (its one JSON form),
``ledger`` (each record's next one), ``causes`` (the cause from evidence, over
``facts``). Shell: ``evidence`` (what the service learned), ``store`` / ``sqlite_store`` /
``redis_store`` (where records live), ``sink`` (the reporter's hook in the running
service) and ``pending`` (its batched writes), ``metrics``, ``control`` (the control
socket's endpoints), ``render`` (text).
"""
