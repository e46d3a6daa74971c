"""Conversions between state-dict layouts, kept apart from the runtime code that uses their results."""
