"""Turn raw bytes from any ingress into a validated ``Event`` or a rejection reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from dataflow_playground.core.schema import Event


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused: the first failing field and the validator's message."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def rejection_from(err: ValidationError) -> Rejection:
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<record>"
    return Rejection(field=loc, reason=first["msg"])


def validate_record(record: Any) -> Event | Rejection:
    """One decoded record (a dict from JSON or protobuf) to an ``Event`` or a rejection."""
    if not isinstance(record, dict):
        return Rejection("<record>", f"expected a JSON object, got {type(record).__name__}")
    try:
        return Event.model_validate(record)
    except ValidationError as err:
        return rejection_from(err)


def decode_event(raw: bytes) -> Event | Rejection:
    """Parse one JSON-encoded event; never raises for bad input."""
    try:
        return Event.model_validate_json(raw)
    except ValidationError as err:
        return rejection_from(err)


# The project's one schema, applied to a whole poll at once: one parse and one validation
# call instead of one per record (pydantic's per-call overhead was the biggest slice).
_EVENTS = TypeAdapter(list[Event])


def decode_batch(values: Sequence[bytes]) -> list[Event | Rejection]:
    """Validate many JSON events at once; on any failure, fall back to one by one.

    Same schema and same outcome as :func:`decode_event` per record: the fast path
    joins the values into one JSON array, and a record that is not exactly one JSON
    value either breaks the array or changes its length, which sends the batch to
    the per-record path.
    """
    if not values:
        return []
    try:
        events: list[Event | Rejection] = list(_EVENTS.validate_json(b"[" + b",".join(values) + b"]"))
    except ValidationError:
        return [decode_event(v) for v in values]
    if len(events) != len(values):
        return [decode_event(v) for v in values]
    return events
