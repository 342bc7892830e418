"""The FastAPI application.

Run: ``uvicorn dataflow_playground.services.rest.app:create_app --factory``
(or ``playground serve rest``).
"""

from __future__ import annotations

from fastapi import FastAPI

from dataflow_playground import __version__
from dataflow_playground.services.rest import events, features, health
from dataflow_playground.services.rest.limits import BodySizeLimit


def create_app() -> FastAPI:
    app = FastAPI(
        title="dataflow-playground",
        version=__version__,
        description="Ingestion and feature-serving endpoints of the dataflow playground.",
    )
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(features.router)
    app.add_middleware(BodySizeLimit, prefixes=("/events",))
    return app
