"""The REST service's error replies, one shape for every refusal: ``{"detail": {"field", "reason"}}``.

FastAPI's own 422 (a bad header, path or query parameter) is rewritten to that shape, so a
caller reads ``detail.field`` whatever refused the request. A client that goes away in the
middle of its upload is logged on one line, not as a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from dataflow_playground.core.validation import Rejection, preview
from dataflow_playground.services.rest.limits import json_error

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str = Field(description="what was refused: an event field, `body`, a header or a parameter")
    reason: str


class ErrorOut(BaseModel):
    detail: FieldError


class MessageOut(BaseModel):
    detail: str


_DESCRIPTIONS: dict[int, tuple[type[BaseModel], str]] = {
    status.HTTP_404_NOT_FOUND: (MessageOut, "no such resource; `detail` says which"),
    status.HTTP_409_CONFLICT: (ErrorOut, "stored data disagrees with what the request needs "
                                         "(e.g. a feature the model needs is not in the online "
                                         "vector); `detail.field` names it"),
    status.HTTP_413_CONTENT_TOO_LARGE: (ErrorOut, "body larger than the limit (2 MiB), or more records "
                                                  "than a batch may hold"),
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: (ErrorOut, "the body is not `application/json`"),
    status.HTTP_422_UNPROCESSABLE_CONTENT: (ErrorOut, "malformed JSON, an invalid field, header or "
                                                      "parameter; `detail.field` names it"),
    status.HTTP_503_SERVICE_UNAVAILABLE: (MessageOut, "a store or model this resource reads is not there "
                                                     "yet, or is incompatible; `detail` says what to do"),
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, with the model each one answers."""
    return {code: {"model": _DESCRIPTIONS[code][0], "description": _DESCRIPTIONS[code][1]}
            for code in codes}


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    field = loc[-1] if loc else "request"  # ("header", "x-sent-at-us") -> "x-sent-at-us"
    reason = str(first.get("msg", "invalid"))
    if first.get("type") != "missing" and "input" in first:
        reason = f"{reason}; got {preview(first['input'])}"
    rejection = Rejection(field, reason)  # capped like every other rejection
    return JSONResponse({"detail": json_error(rejection.field, rejection.reason)},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _client_disconnect(request: Request, _exc: Exception) -> JSONResponse:
    client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
    log.warning("%s disconnected before its %s %s body was complete; nothing was taken",
                client, request.method, request.url.path)
    # Nobody reads this answer: the connection is gone.
    return JSONResponse({"detail": json_error("body", "client disconnected mid-upload")},
                        status_code=status.HTTP_400_BAD_REQUEST)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
