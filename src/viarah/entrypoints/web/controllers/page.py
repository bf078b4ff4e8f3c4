"""The browser page at ``/``: turn push notifications on or off for this browser.

Public (no authentication: the page itself asks the API who is logged in) but behind the
Host allowlist like everything else. Static files only, shipped inside the package: the
HTML, its script and style, an icon, and the service worker at the root path so that its
scope is the whole origin. No inline script or style, nothing from another origin: the
Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from litestar import Controller, Response, get
from litestar.status_codes import HTTP_200_OK

#: Only this origin, for everything; no inline code, no framing, no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Small files that change with each release: always revalidate, never a stale script.
    "Cache-Control": "no-cache",
}
JAVASCRIPT = "application/javascript; charset=utf-8"


@cache
def _static(name: str) -> bytes:
    """A file of ``entrypoints/web/static`` (read once per process)."""
    return files("viarah.entrypoints.web").joinpath("static", name).read_bytes()


def _file(name: str, media_type: str, **headers: str) -> Response[bytes]:
    return Response(
        _static(name),
        status_code=HTTP_200_OK,
        media_type=media_type,
        headers={**_COMMON_HEADERS, **headers},
    )


class PageController(Controller):
    """``/`` and its assets; ``/service-worker.js`` may control the whole origin."""

    tags = ["page"]
    include_in_schema = False

    @get("/", summary="The notifications page")
    async def index(self) -> Response[bytes]:
        return _file("index.html", "text/html; charset=utf-8", **{"X-Frame-Options": "DENY"})

    @get("/app.js", summary="The page's script")
    async def script(self) -> Response[bytes]:
        return _file("app.js", JAVASCRIPT)

    @get("/app.css", summary="The page's style")
    async def style(self) -> Response[bytes]:
        return _file("app.css", "text/css; charset=utf-8")

    @get("/icon.svg", summary="The page and notification icon")
    async def icon(self) -> Response[bytes]:
        return _file("icon.svg", "image/svg+xml")

    @get("/service-worker.js", summary="The service worker: shows pushed notifications")
    async def service_worker(self) -> Response[bytes]:
        return _file("service-worker.js", JAVASCRIPT, **{"Service-Worker-Allowed": "/"})
