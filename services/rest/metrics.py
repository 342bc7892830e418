"""``GET /metrics`` (Prometheus text format) and the request-latency middleware.

The latency histogram (``playground_request_duration_seconds``) is labelled by method, the
matched route's *template* (``/features/{entity}/{entity_id}``, so one series per route, not
one per id asked for) and status code; a path no route matches is ``<unmatched>``. The
ingestion counters come from :class:`~...services.ingest.Ingest`.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataflow_playground.core.metrics import REQUEST_DURATION, check_component

UNMATCHED = "<unmatched>"
# A client may send any method token; the label keeps the standard ones and folds the rest.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
METRICS_PATH = "/metrics"


def metrics_endpoint(_request: Request) -> Response:
    """Every series of this process (the same registry the other processes serve)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Pure ASGI middleware: observe each HTTP request's duration once its response started.

    Pure ASGI (not ``BaseHTTPMiddleware``), so a streamed or large response is not buffered.
    The route is read from the scope after the app ran: FastAPI's router puts the matched
    route there (``scope["route"]``).
    """

    def __init__(self, app: ASGIApp, component: str = "rest") -> None:
        self.app = app
        self.component = check_component(component)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            REQUEST_DURATION.labels(self.component, method, _route(scope), str(status)).observe(
                time.perf_counter() - started)


def _route(scope: MutableMapping[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
