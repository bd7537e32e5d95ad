"""GRINDER: reconcile a trading bot's expected state with the exchange, and remediate."""

__version__ = "0.1.0"
