"""The HTTP listener (``gearshift serve --http-port``): Prometheus metrics, a JSON API,
gearmand's HTTP protocol, health checks and a dashboard. Optional: it needs the
``http`` extra (aiohttp, httptools, prometheus-client), imported only when the
listener is asked for, so a server without it pays nothing.
"""

from __future__ import annotations

#: What ``pip install`` brings the listener's libraries.
EXTRA = "gearshift[http]"


def missing_dependency() -> str | None:
    """Why the listener cannot run here (a library is missing), or None."""
    try:
        import aiohttp  # noqa: F401
        import httptools  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        libraries = "aiohttp, httptools and prometheus-client"
        return (f"--http-port needs {exc.name or libraries}: "
                f"pip install '{EXTRA}'")
    return None
