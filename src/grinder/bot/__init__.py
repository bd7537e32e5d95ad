"""Demonstration trading bots that record their expected state for GRINDER."""
