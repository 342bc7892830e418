"""The FastAPI application.

Run: ``uvicorn dataflow_playground.services.rest.app:create_app --factory``
(or ``playground serve rest``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from dataflow_playground import __version__
from dataflow_playground.services.rest import errors, events, features, health, score
from dataflow_playground.services.rest.limits import BodySizeLimit
from dataflow_playground.services.rest.metrics import METRICS_PATH, RequestMetrics, metrics_endpoint


def create_app() -> FastAPI:
    app = FastAPI(
        title="dataflow-playground",
        version=__version__,
        description="Ingestion, feature-serving and scoring endpoints of the dataflow playground.",
    )
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(features.router)
    app.include_router(score.router)
    app.add_route(METRICS_PATH, metrics_endpoint, include_in_schema=False)  # Prometheus text format
    app.add_middleware(BodySizeLimit, prefixes=("/events", "/score"))
    app.add_middleware(RequestMetrics)  # the outermost: it times the body limit's refusals too
    errors.install(app)
    built = app.openapi  # FastAPI builds the document once and caches it

    def openapi() -> dict[str, Any]:
        spec = built()
        spec.setdefault("components", {}).setdefault("schemas", {}).update(events.openapi_components())
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return app
