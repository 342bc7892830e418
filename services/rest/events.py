"""``POST /events`` (one event) and ``POST /events/batch``: the REST ingestion resource.

The body is parsed here (orjson) rather than by FastAPI so that a batch can keep
its good records and list its bad ones; the OpenAPI schema is still declared, and it
states every rule the service applies (``Event``'s enums, pattern and bounds).
Errors name the field: ``{"detail": {"field": ..., "reason": ...}}``. Only
``application/json`` bodies are taken (415 otherwise, so a plain HTML form or a
``text/plain`` fetch from another site cannot post events). Malformed JSON or a wrong
body shape is 422 with field ``body``; an oversized body, or a batch of more than
``MAX_BATCH_RECORDS`` records, is 413 (``dataflow_playground.services.rest.limits``). The
producer's send time rides in ``x-sent-at-us``. A reply lists at most
``MAX_LISTED_REJECTIONS`` rejections and counts the rest.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, WithJsonSchema

from dataflow_playground.core.schema import INT64_MAX, Event
from dataflow_playground.core.settings import get_settings
from dataflow_playground.core.validation import MAX_REASON_CHARS, clip, preview
from dataflow_playground.services.ingest import (
    MAX_BATCH_RECORDS,
    MAX_LISTED_REJECTIONS,
    SENT_AT_NAME,
    Ingest,
    Outcome,
    batch_too_large,
    ingest_folder,
)
from dataflow_playground.services.rest.errors import responses
from dataflow_playground.services.rest.limits import json_error

router = APIRouter(prefix="/events", tags=["events"])


class RejectionOut(BaseModel):
    index: int = Field(ge=0, description="position of the refused record in the batch")
    field: str = Field(description="the first failing field; `<record>` for the record as a whole")
    reason: str = Field(description="why; quotes at most a short prefix of the refused value")


class IngestOut(BaseModel):
    """Counts are whole; the list holds the first refused records only (all are dead-lettered)."""

    accepted: int = Field(ge=0, description="records stored")
    rejected: int = Field(ge=0, description="records refused")
    rejections: list[RejectionOut] = Field(max_length=MAX_LISTED_REJECTIONS, description=(
        f"the first {MAX_LISTED_REJECTIONS} refused records, in batch order"))
    rejections_omitted: int = Field(ge=0, description=(
        "refused records not listed: rejected - len(rejections)"))


class IngestStatsOut(BaseModel):
    accepted: int
    rejected: int
    receipts: str
    dead_letters: str


@lru_cache(maxsize=1)
def get_ingest() -> Ingest:
    return Ingest(ingest_folder(get_settings().data_dir / "ingest"), source="rest")


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (a ``charset``, if any, must be UTF-8)."""
    declared = request.headers.get("content-type")
    media, *params = (declared or "").split(";")
    charset = [p.split("=", 1)[1].strip().strip('"').lower() for p in params
               if p.strip().lower().startswith("charset=")]
    if media.strip().lower() != "application/json" or any(c not in {"utf-8", "utf8"} for c in charset):
        got = f"got {preview(declared)}" if declared is not None else "got none"
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            json_error("content-type", f"send the body as application/json (UTF-8); {got}"))


IngestDep = Annotated[Ingest, Depends(get_ingest)]
SentAt = Annotated[
    int | None,
    # One integer in the OpenAPI (pydantic would write `anyOf: [integer, null]` for the optional).
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": INT64_MAX}),
    Header(alias=SENT_AT_NAME, ge=0, le=INT64_MAX,
           description="producer send clock, UTC µs since the epoch (decimal int64); default: now"),
]

_ERRORS = responses(413, 415, 422)


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


EVENT_REF = {"$ref": "#/components/schemas/Event"}


def openapi_components() -> dict[str, Any]:
    """Schemas the request bodies refer to; made afresh for each OpenAPI document, since the
    bound on ``ts`` moves with the clock."""
    return {"Event": Event.model_json_schema()}


async def _parse(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            json_error("body", clip(f"malformed JSON: {err}", MAX_REASON_CHARS))) from err


def _out(outcome: Outcome) -> IngestOut:
    listed = [RejectionOut(index=i, field=r.field, reason=r.reason) for i, r in outcome.rejections]
    return IngestOut(accepted=outcome.accepted, rejected=outcome.rejected, rejections=listed,
                     rejections_omitted=outcome.omitted)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=IngestOut,
             dependencies=[Depends(require_json)], openapi_extra=_body(EVENT_REF), responses=_ERRORS)
async def post_event(request: Request, ingest: IngestDep, sent_at: SentAt = None) -> IngestOut:
    """Ingest one event; an invalid one is refused with 422 naming the field."""
    record = await _parse(request)
    outcome = await run_in_threadpool(ingest.ingest, [record], sent_at)
    if outcome.rejections:
        _, rejection = outcome.rejections[0]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            json_error(rejection.field, rejection.reason))
    return _out(outcome)


@router.post("/batch", response_model=IngestOut, dependencies=[Depends(require_json)],
             openapi_extra=_body({"type": "array", "items": EVENT_REF, "maxItems": MAX_BATCH_RECORDS}),
             responses=_ERRORS)
async def post_batch(request: Request, ingest: IngestDep, sent_at: SentAt = None) -> IngestOut:
    """Ingest a JSON array of events: good ones are kept, bad ones counted and the first ones listed
    by index and field (a record that does not match ``Event`` is refused alone, not the batch)."""
    records = await _parse(request)
    if not isinstance(records, list):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            json_error("body", f"expected a JSON array, got {type(records).__name__}"))
    if len(records) > MAX_BATCH_RECORDS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            json_error("body", batch_too_large(len(records), "request")))
    # Off the event loop: a large batch must not stall /health or other requests.
    return _out(await run_in_threadpool(ingest.ingest, records, sent_at))


@router.get("/stats", response_model=IngestStatsOut)
def ingest_stats(ingest: IngestDep) -> IngestStatsOut:
    """Counts since this process started, and where its receipts and dead letters are."""
    return IngestStatsOut(accepted=ingest.accepted, rejected=ingest.rejected,
                          receipts=str(ingest.receipts.path), dead_letters=str(ingest.dead_path))
