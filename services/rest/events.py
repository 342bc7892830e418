"""``POST /events`` (one event) and ``POST /events/batch``: the REST ingestion resource.

The body is parsed here (orjson) rather than by FastAPI so that a batch can keep
its good records and list its bad ones; the OpenAPI schema is still declared.
Errors name the field: ``{"detail": {"field": ..., "reason": ...}}``. Malformed
JSON or a wrong body shape is 422 with field ``body``; an oversized body is 413
(``dataflow_playground.services.rest.limits``). The producer's send time rides in ``x-sent-at-us``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import BaseModel

from dataflow_playground.core.schema import Event
from dataflow_playground.core.settings import get_settings
from dataflow_playground.services.ingest import Ingest, Outcome, ingest_folder
from dataflow_playground.services.rest.limits import json_error

router = APIRouter(prefix="/events", tags=["events"])


class RejectionOut(BaseModel):
    index: int
    field: str
    reason: str


class IngestOut(BaseModel):
    accepted: int
    rejected: list[RejectionOut]


class IngestStatsOut(BaseModel):
    accepted: int
    rejected: int
    receipts: str
    dead_letters: str


@lru_cache(maxsize=1)
def get_ingest() -> Ingest:
    return Ingest(ingest_folder(get_settings().data_dir / "ingest"), source="rest")


IngestDep = Annotated[Ingest, Depends(get_ingest)]
SentAt = Annotated[int | None, Header(alias="x-sent-at-us", description="producer send clock, UTC µs")]

_EVENT_SCHEMA = Event.model_json_schema()
_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "body larger than the limit"},
    422: {"description": "malformed JSON or an invalid field; `detail.field` names it"},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            json_error("body", f"malformed JSON: {err}")) from err


def _out(outcome: Outcome) -> IngestOut:
    return IngestOut(accepted=outcome.accepted, rejected=[
        RejectionOut(index=i, field=r.field, reason=r.reason) for i, r in outcome.rejections])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IngestOut,
             openapi_extra=_body(_EVENT_SCHEMA), responses=_ERRORS)
async def post_event(request: Request, ingest: IngestDep, sent_at: SentAt = None) -> IngestOut:
    """Ingest one event; an invalid one is refused with 422 naming the field."""
    outcome = ingest.ingest([_parse(await request.body())], sent_at)
    if outcome.rejections:
        _, rejection = outcome.rejections[0]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            json_error(rejection.field, rejection.reason))
    return _out(outcome)


@router.post("/batch", response_model=IngestOut,
             openapi_extra=_body({"type": "array", "items": _EVENT_SCHEMA}), responses=_ERRORS)
async def post_batch(request: Request, ingest: IngestDep, sent_at: SentAt = None) -> IngestOut:
    """Ingest a JSON array of events: good ones are kept, bad ones listed by index and field."""
    records = _parse(await request.body())
    if not isinstance(records, list):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            json_error("body", f"expected a JSON array, got {type(records).__name__}"))
    return _out(ingest.ingest(records, sent_at))


@router.get("/stats", response_model=IngestStatsOut)
def ingest_stats(ingest: IngestDep) -> IngestStatsOut:
    """Counts since this process started, and where its receipts and dead letters are."""
    return IngestStatsOut(accepted=ingest.accepted, rejected=ingest.rejected,
                          receipts=str(ingest.receipts.path), dead_letters=str(ingest.dead_path))
