"""Turn raw bytes from any ingress into a validated ``Event`` or a rejection reason."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from playground.schema import Event


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


def decode_event(raw: bytes) -> Event | Rejection:
    """Parse one JSON-encoded event; never raises for bad input."""
    try:
        return Event.model_validate_json(raw)
    except ValidationError as err:
        return rejection_from(err)
