"""The dashboard at ``/``: one static page (HTML, CSS and JavaScript shipped in the
package, no CDN, no build step) that polls the JSON API."""

from __future__ import annotations

from importlib import resources

from aiohttp import web


def _page() -> bytes:
    return resources.files("gearshift.http").joinpath("dashboard.html").read_bytes()


async def dashboard(request: web.Request) -> web.Response:
    return web.Response(body=_page(), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


def routes() -> list[web.RouteDef]:
    return [web.get("/", dashboard)]
