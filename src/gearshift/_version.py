"""The package version, kept in one place (the admin `version` command reports it)."""

__version__ = "0.1.0"
