"""Stands in for a missing ``rich`` (see conftest.NO_RICH)."""

raise ImportError("rich is not installed (test stand-in)")
