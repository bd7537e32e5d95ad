"""Entry points for the runbook commands (``python3 -m scripts.<name>``)."""
