"""Turn raw bytes from any ingress into a validated ``Event`` or a rejection reason.

A rejection travels far: into replies, gRPC status details, dead-letter lines and Kafka
headers. Its size must not grow with the input, so this module is the one place that
quotes a refused value, and it quotes a bounded preview only (a 1 MiB string is shown by
its first characters and its length); ``Rejection`` itself caps its field and reason.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import TypeAdapter, ValidationError

from dataflow_playground.core.schema import Event

MAX_ECHO_CHARS = 40  # of a refused value quoted in a reason
MAX_FIELD_CHARS = 80  # a field path (an unknown key is part of it)
MAX_REASON_CHARS = 300

# Containers are previewed by their first items only, so the work is bounded too.
_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = 3
_REPR.maxdeque = _REPR.maxarray = 3
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = MAX_ECHO_CHARS
# Error types whose ``input`` is not the refused value itself (a missing field's is the record).
_NO_PREVIEW = frozenset({"missing"})


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its prefix and how much was cut."""
    if len(text) <= limit:
        return text
    suffix = f"… (+{len(text) - limit} chars)"
    return text[:max(limit - len(suffix), 0)] + suffix


def preview(value: Any) -> str:
    """A short, bounded ``repr`` of a refused value: a prefix of a long string, not all of it."""
    if isinstance(value, str | bytes | bytearray):
        text = repr(value[:MAX_ECHO_CHARS])
        return text if len(value) <= MAX_ECHO_CHARS else f"{text}… ({len(value)} chars)"
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int too long for str()
        text = f"<{type(value).__name__}>"
    return clip(text, 2 * MAX_ECHO_CHARS)


# What kind of fault a rejection is: a fixed set, so it can label a metric (dead letters by
# reason) where the free-text reason, which quotes the input, cannot.
RejectionKind = Literal["malformed_json", "not_an_object", "missing_field", "unknown_field", "wrong_type",
                        "out_of_range", "invalid_value", "too_many_records", "malformed_record"]
REJECTION_KINDS: tuple[RejectionKind, ...] = get_args(RejectionKind)
_KIND_OF_ERROR: dict[str, RejectionKind] = {
    "json_invalid": "malformed_json", "json_type": "malformed_json",
    "model_type": "not_an_object", "model_attributes_type": "not_an_object", "dict_type": "not_an_object",
    "missing": "missing_field", "extra_forbidden": "unknown_field",
    **dict.fromkeys(("greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of",
                     "finite_number", "too_long", "too_short", "string_too_long", "string_too_short",
                     "int_from_float", "decimal_max_digits"), "out_of_range"),
}


def kind_of_error(error_type: str) -> RejectionKind:
    """The kind of a pydantic error type (``ErrorDetails["type"]``)."""
    if error_type in _KIND_OF_ERROR:
        return _KIND_OF_ERROR[error_type]
    if error_type.endswith(("_type", "_parsing")):
        return "wrong_type"
    return "invalid_value"


@dataclass(frozen=True)
class Rejection:
    """Why a record was refused: the first failing field, the validator's message, and its kind.

    Field and reason are capped (``MAX_FIELD_CHARS``, ``MAX_REASON_CHARS``) whoever builds the
    rejection; ``kind`` is one of :data:`REJECTION_KINDS`.
    """

    field: str
    reason: str
    kind: RejectionKind = "invalid_value"

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", clip(self.field, MAX_FIELD_CHARS))
        object.__setattr__(self, "reason", clip(self.reason, MAX_REASON_CHARS))
        if self.kind not in REJECTION_KINDS:
            raise ValueError(f"rejection kind must be one of {', '.join(REJECTION_KINDS)}, got {self.kind!r}")

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def rejection_from(err: ValidationError) -> Rejection:
    first = err.errors(include_url=False, include_context=False)[0]
    loc = ".".join(str(p) for p in first["loc"]) or "<record>"
    reason = first["msg"]
    if first["type"] not in _NO_PREVIEW and "input" in first:
        reason = f"{reason}; got {preview(first['input'])}"
    return Rejection(field=loc, reason=reason, kind=kind_of_error(first["type"]))


def validate_record(record: Any) -> Event | Rejection:
    """One decoded record (a dict from JSON or protobuf) to an ``Event`` or a rejection."""
    if not isinstance(record, dict):
        return Rejection("<record>", f"expected a JSON object, got {type(record).__name__}", "not_an_object")
    try:
        return Event.model_validate(record)
    except ValidationError as err:
        return rejection_from(err)


def decode_event(raw: bytes | None) -> Event | Rejection:
    """Parse one JSON-encoded event; never raises for bad input (a tombstone's ``None`` included)."""
    if raw is None:
        return Rejection("<record>", "no value (a tombstone): expected a JSON event", "malformed_json")
    try:
        return Event.model_validate_json(raw)
    except ValidationError as err:
        return rejection_from(err)


# The project's one schema, applied to a whole poll at once: one parse and one validation
# call instead of one per record (pydantic's per-call overhead was the biggest slice).
_EVENTS = TypeAdapter(list[Event])


def decode_batch(values: Sequence[bytes | None]) -> list[Event | Rejection]:
    """Validate many JSON events at once; on any failure, fall back to one by one.

    Same schema and same outcome as :func:`decode_event` per record: the fast path
    joins the values into one JSON array, and a record that is not exactly one JSON
    value either breaks the array or changes its length, which sends the batch to
    the per-record path. A Kafka tombstone (no value at all) is refused like any other
    record that is not an event, never a crash.
    """
    if not values:
        return []
    raw = [v for v in values if v is not None]
    if len(raw) != len(values):
        return [decode_event(v) for v in values]
    try:
        events: list[Event | Rejection] = list(_EVENTS.validate_json(b"[" + b",".join(raw) + b"]"))
    except ValidationError:
        return [decode_event(v) for v in values]
    if len(events) != len(values):
        return [decode_event(v) for v in values]
    return events
