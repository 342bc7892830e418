"""``POST /score``: score one payment with the trained fraud model on online stream features.

The body is an :class:`~dataflow_playground.core.schema.Event` (its ``is_fraud`` label is
ignored). The service reads the user's and the merchant's latest stream feature vectors
from the online store (the one ``GET /features`` reads), puts the model's features in the
order it was trained on, and returns the fraud score with the values used and their age.

Refusals, never a silent default:

- no model file, or one trained on a feature list that no longer matches the definitions:
  503 saying what to run (``playground train leakage``) or which features differ;
- no online store yet: 503 (as ``GET /features``);
- a user or merchant the stream has never seen: 404 naming it;
- a stored vector without a feature the model needs, or with a non-number in it: 409
  naming the feature (the worker and the model disagree; retrain or restart the worker).

A null value (e.g. a 7-day average over an empty window) is *not* missing: batch training
saw the same null, and the model takes it as missing data.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from dataflow_playground.core.schema import Event
from dataflow_playground.core.settings import get_settings
from dataflow_playground.core.validation import Rejection, validate_record
from dataflow_playground.features.definitions import FEATURES, MERCHANT, USER
from dataflow_playground.features.model import FraudModel, ModelError, load_model, model_path
from dataflow_playground.features.online_store import OnlineStoreReader, now_ms
from dataflow_playground.services.rest.errors import responses
from dataflow_playground.services.rest.events import EVENT_REF, _body, _parse, require_json
from dataflow_playground.services.rest.features import Reader
from dataflow_playground.services.rest.limits import json_error

router = APIRouter(tags=["score"])

_ENTITY_OF = {f.name: f.entity for f in FEATURES}


class EntityFreshness(BaseModel):
    id: int
    as_of: int = Field(description="event time (ms) the stored values hold for")
    updated_ms: int = Field(description="wall clock (ms) when the worker last wrote them")
    age_ms: int = Field(description="now - updated_ms")


class ScoreOut(BaseModel):
    event_id: int
    score: float = Field(ge=0, le=1, description="the model's fraud probability")
    model_version: str
    features: dict[str, float | None] = Field(
        description="the values the model scored, in its feature order (null = missing value)")
    user: EntityFreshness
    merchant: EntityFreshness
    age_ms: int = Field(description="age of the oldest vector used")


def get_model() -> FraudModel:
    """The model file under the data folder, checked against the feature definitions."""
    try:
        return load_model(model_path(get_settings()))
    except ModelError as err:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(err)) from err


Model = Annotated[FraudModel, Depends(get_model)]


@router.post("/score", response_model=ScoreOut, dependencies=[Depends(require_json)],
             openapi_extra=_body(EVENT_REF), responses=responses(404, 409, 413, 415, 422, 503))
async def score(request: Request, model: Model, reader: Reader) -> ScoreOut:
    """Fraud score of one payment from the user's and merchant's online stream features.

    The body is one event, validated as ``POST /events`` validates it (422 naming the field).
    """
    event = validate_record(await _parse(request))
    if isinstance(event, Rejection):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, json_error(event.field, event.reason))
    return await run_in_threadpool(_score, event, model, reader)


def _score(event: Event, model: FraudModel, reader: OnlineStoreReader) -> ScoreOut:
    rows = {}
    for entity, id_ in ((USER, event.user_id), (MERCHANT, event.merchant_id)):
        row = reader.get(entity.name, id_)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no features for {entity.name} {id_}: "
                                                        "the stream has not seen it yet")
        rows[entity.name] = row
    values: dict[str, object] = {}
    for name in model.features:
        entity = _ENTITY_OF[name]  # the loader checked every name against FEATURES
        stored = rows[entity.name].values
        if name not in stored:
            raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=json_error(
                name, f"the online vector of {entity.name} {rows[entity.name].id} has no "
                      f"'{name}', which model {model.version} needs; restart the features worker "
                      "with the current definitions or retrain the model"))
        values[name] = stored[name]
    try:
        vector = model.row(values)
    except TypeError as err:
        name = str(err).split(" ", 1)[0]
        raise HTTPException(status_code=status.HTTP_409_CONFLICT,
                            detail=json_error(name, f"stored value is not a number: {err}")) from err
    value = model.score_rows([vector])[0]
    now = now_ms()
    fresh = {name: EntityFreshness(id=r.id, as_of=r.as_of, updated_ms=r.updated_ms,
                                   age_ms=max(now - r.updated_ms, 0)) for name, r in rows.items()}
    used = {n: (None if math.isnan(v) else v) for n, v in zip(model.features, vector, strict=True)}
    return ScoreOut(event_id=event.event_id, score=value, model_version=model.version, features=used,
                    user=fresh["user"], merchant=fresh["merchant"],
                    age_ms=max(f.age_ms for f in fresh.values()))
