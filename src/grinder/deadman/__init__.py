"""The dead-man switch: Binance's ``countdownCancelAll``, renewed by the HA leader only.

``config`` is the ``[deadman]`` table and its rules; ``decision`` decides, from a frozen
set of inputs, whether a renewal is due, must be withheld (and why) or can wait -- pure;
``grinder.service.deadman`` is the shell that reads those inputs, sends the renewals
through the write fence and exports the metrics (``metrics``).
"""
