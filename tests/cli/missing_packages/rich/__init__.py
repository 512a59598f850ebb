"""Stands in for a missing ``rich`` (see conftest.MISSING_PACKAGES)."""

raise ImportError("rich is not installed (test stand-in)")
