"""``GET /features/{entity}/{id}``: the latest stream feature values of one entity, with freshness.

Reads the online store (SQLite, WAL) that the features worker writes; this process
never writes it. ``age_ms`` is wall-clock time since the worker last rewrote the
vector; ``as_of`` is the event time the values hold for (right after the entity's
latest event).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from dataflow_playground.core.schema import INT64_MAX
from dataflow_playground.core.settings import get_settings
from dataflow_playground.features.definitions import ENTITIES
from dataflow_playground.features.online_store import (
    OnlineStoreError,
    OnlineStoreReader,
    now_ms,
    online_store_path,
)
from dataflow_playground.services.rest.errors import responses

router = APIRouter(prefix="/features", tags=["features"])


class FeaturesOut(BaseModel):
    entity: str
    id: int
    as_of: int
    values: dict[str, object]
    updated_ms: int
    age_ms: int
    late_events_accepted: int | None = None
    late_events_dropped: int | None = None


def get_reader() -> Iterator[OnlineStoreReader]:
    """One reader per request, closed after the response whatever the outcome (404s too)."""
    try:
        reader = OnlineStoreReader(online_store_path(get_settings()))
    except OnlineStoreError as err:
        raise HTTPException(status_code=503, detail=str(err)) from err
    try:
        yield reader
    finally:
        reader.close()


Reader = Annotated[OnlineStoreReader, Depends(get_reader)]


# The entity is checked in the handler (404 naming the known ones), and listed in the schema.
Entity = Annotated[str, Path(description="the kind of entity", json_schema_extra={"enum": list(ENTITIES)})]
# Ids are int64 in the store: a larger one is refused here, before SQLite would overflow.
EntityId = Annotated[int, Path(ge=0, le=INT64_MAX, description="the entity's id (int64)")]


@router.get("/{entity}/{entity_id}", response_model=FeaturesOut, responses=responses(404, 422, 503))
def get_features(entity: Entity, entity_id: EntityId, reader: Reader) -> FeaturesOut:
    """The latest stream feature values of one entity; 404 if the stream has not seen it."""
    if entity not in ENTITIES:
        raise HTTPException(status_code=404,
                            detail=f"unknown entity {entity!r}; use one of {', '.join(ENTITIES)}")
    row = reader.get(entity, entity_id)
    stats = reader.stats()
    if row is None:
        raise HTTPException(status_code=404,
                            detail=f"no features for {entity} {entity_id}: the stream has not seen it yet")
    return FeaturesOut(entity=entity, id=entity_id, as_of=row.as_of, values=row.values,
                       updated_ms=row.updated_ms, age_ms=max(now_ms() - row.updated_ms, 0),
                       late_events_accepted=stats.get("late_accepted"),
                       late_events_dropped=stats.get("late_dropped"))
