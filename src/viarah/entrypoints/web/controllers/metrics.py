"""``GET /metrics``: this process's Prometheus metrics, in the text exposition format.

Public (Prometheus scrapes without credentials) and outside the OpenAPI document, but
behind the Host allowlist like every route. It reveals operational numbers, never ids or
secrets; still, it belongs on the internal network only: the reverse proxy must not pass
``/metrics`` through (docs/operator-basics.md#metrics).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State

from viarah.container import metrics_exposition
from viarah.entrypoints.web.deps import container_of


class MetricsController(Controller):
    """The scrape target of the web process (and, under ``viarah serve``, its worker)."""

    tags = ["metrics"]
    include_in_schema = False

    @get("/metrics", summary="Prometheus metrics", cache=False)
    async def metrics(self, request: Request[Any, Any, Any], state: State) -> Response[bytes]:
        body, content_type = await metrics_exposition(
            container_of(state), request.headers.get("accept", "")
        )
        # The exact Content-Type prometheus_client chose (set as a header: litestar would
        # append a second charset to a text/* media type).
        return Response(
            body,
            headers={
                "Content-Type": content_type,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )
