"""Request counts and latencies for Prometheus, and the ``GET /metrics`` page.

Labelled by the route's template (``/v1/loans/{loan_id}``), never the raw path, so a
loan id does not become a new series; requests no route matched share one label.
"""

import time

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import Counter, Histogram

from agri_common.metrics import exposition

REQUESTS = Counter("agri_api_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "agri_api_request_seconds",
    "time to answer a request",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
UNMATCHED = "(no route)"

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by method, route and status."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = route_template(scope)
            method = scope["method"]
            REQUESTS.labels(method, route, str(status["code"])).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)


def route_template(scope) -> str:
    """The template of the route that answered (``/v1/loans/{loan_id}``). The matched
    route knows its own template, which under an included router may lack the router's
    prefix (FastAPI keeps the original route); the prefix is the request path's leading
    segments, as many as the template does not cover."""
    template = getattr(scope.get("route"), "path", None)
    if template is None:
        return UNMATCHED
    own = [part for part in template.split("/") if part]
    requested = [part for part in scope["path"].split("/") if part]
    prefix = requested[: max(0, len(requested) - len(own))]
    return "/" + "/".join(prefix + own)
