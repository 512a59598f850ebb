"""Stands in for a missing ``asyncpg`` (see conftest.MISSING_PACKAGES)."""

raise ImportError("No module named 'asyncpg' (test stand-in)")
