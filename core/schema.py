"""The payment event: the one source of truth for its shape.

``FIELDS`` lists every field once. The Arrow schema, the Avro schema and the
DuckDB DDL are derived from it here; the pydantic model below and the
``.proto`` message are written by hand for readability, and
``tests/core/test_schema.py`` proves that they agree with ``FIELDS`` field by field.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

LogicalType = Literal["int64", "float64", "string", "bool", "timestamp_ms"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: LogicalType
    nullable: bool
    doc: str


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("event_id", "int64", False, "unique id of the transaction; the idempotency key"),
    FieldSpec("user_id", "int64", False, "paying user (the Kafka message key)"),
    FieldSpec("merchant_id", "int64", False, "merchant receiving the payment"),
    FieldSpec("amount", "float64", False, "amount in `currency`, > 0 and finite"),
    FieldSpec("currency", "string", False, "ISO 4217 code"),
    FieldSpec("country", "string", False, "ISO 3166 alpha-2 code of the card's country"),
    FieldSpec("device", "string", True, "ios, android, web or pos; null when unknown"),
    FieldSpec("ts", "timestamp_ms", False, "event time, UTC milliseconds since the epoch"),
    FieldSpec("is_fraud", "bool", False, "label: the transaction was reported as fraud"),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BRL", "INR")
DEVICES = ("ios", "android", "web", "pos")
MAX_AMOUNT = 1_000_000.0
INT64_MAX = 2**63 - 1  # every id and ts is stored as a signed 64-bit integer
# Two upper-case ASCII letters. With maxLength 2 it means the same to pydantic's regex engine
# and to any JSON Schema validator (where `$` may also match before a final newline).
COUNTRY_PATTERN = r"^[A-Z]{2}$"
# JSON has one number type: to JSON Schema (draft 6 on) `2.0` is the integer 2. A whole number
# written that way is taken as an integer while a float holds it exactly; past 2**53 the parsed
# float may differ from the digits sent, and an id must never be rounded silently.
MAX_EXACT_FLOAT_INT = 2**53 - 1
# Event times before this are rejected as impossible (clock at zero, unit mix-ups).
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
# How far ahead of the receiving clock an event time may be (clock skew allowance).
MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000


# --- derived forms -------------------------------------------------------------------------

_ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp_ms": pa.int64(),
}
_DUCKDB_TYPES = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp_ms": "BIGINT",
}
_AVRO_TYPES: dict[str, Any] = {
    "int64": "long",
    "float64": "double",
    "string": "string",
    "bool": "boolean",
    "timestamp_ms": {"type": "long", "logicalType": "timestamp-millis"},
}


def arrow_schema() -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.type], nullable=f.nullable) for f in FIELDS]
    )


def avro_schema() -> dict[str, Any]:
    fields = []
    for f in FIELDS:
        t = _AVRO_TYPES[f.type]
        fields.append({"name": f.name, "type": ["null", t] if f.nullable else t, "doc": f.doc})
    return {"type": "record", "name": "Transaction", "namespace": "dataflow.playground",
            "fields": fields}


def duckdb_columns(primary_key: bool = True) -> str:
    cols = []
    for f in FIELDS:
        col = f"{f.name} {_DUCKDB_TYPES[f.type]}"
        if not f.nullable:
            col += " NOT NULL"
        if primary_key and f.name == "event_id":
            col += " PRIMARY KEY"
        cols.append(col)
    return ",\n    ".join(cols)


def duckdb_ddl(table: str = "events") -> str:
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {duckdb_columns()}\n)"


# --- the validating model ------------------------------------------------------------------


_DOCS = {f.name: f.doc for f in FIELDS}


def clock_ms() -> int:
    """The receiving clock that bounds ``ts`` (one function, so the schema and the check agree)."""
    return int(time.time() * 1000)


def _ts_json_schema(schema: dict[str, Any]) -> None:
    # The upper bound moves with the clock. A schema states the bound at the moment it is
    # generated; the service's own bound only grows after that, so whatever the schema allows
    # stays accepted (regenerate the schema to see today's bound).
    schema["maximum"] = clock_ms() + MAX_FUTURE_SKEW_MS
    schema["description"] = (f"{_DOCS['ts']}; at least {MIN_TS_MS} (2000-01-01) and at most 24 h ahead "
                              "of the receiving clock (`maximum` is that bound when this schema was made)")


class Event(BaseModel):
    """A validated payment event. Strict: no silent coercion of wrong types (a string is not a
    number, a number is not a bool); a whole number is an integer however it is written, up to 2**53.

    The JSON schema (``Event.model_json_schema()``, the services' OpenAPI) states every rule
    the validators apply: enums, the country pattern, numeric bounds, nullability.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: int = Field(ge=0, le=INT64_MAX, description=_DOCS["event_id"])
    user_id: int = Field(ge=0, le=INT64_MAX, description=_DOCS["user_id"])
    merchant_id: int = Field(ge=0, le=INT64_MAX, description=_DOCS["merchant_id"])
    amount: float = Field(gt=0, le=MAX_AMOUNT, description=_DOCS["amount"])
    currency: str = Field(description=_DOCS["currency"], json_schema_extra={"enum": list(CURRENCIES)})
    country: str = Field(min_length=2, max_length=2, pattern=COUNTRY_PATTERN, description=_DOCS["country"])
    device: str | None = Field(description=_DOCS["device"], json_schema_extra={
        "anyOf": [{"type": "string", "enum": list(DEVICES)}, {"type": "null"}]})
    ts: int = Field(ge=MIN_TS_MS, le=INT64_MAX, json_schema_extra=_ts_json_schema)
    is_fraud: bool = Field(description=_DOCS["is_fraud"])

    # The validators below name the rule, not the value: ``core.validation`` appends a bounded
    # preview of the refused value to every reason, in one place.

    @field_validator("event_id", "user_id", "merchant_id", "ts", mode="before")
    @classmethod
    def _whole_number(cls, v: Any) -> Any:
        if isinstance(v, float) and v.is_integer() and abs(v) <= MAX_EXACT_FLOAT_INT:
            return int(v)  # 1.7e12 is the integer 1700000000000; 1.5 stays a float and is refused
        return v

    @field_validator("amount", mode="before")
    @classmethod
    def _finite_amount(cls, v: Any) -> Any:
        # JSON has no NaN, but Python callers and lenient decoders can produce one.
        if isinstance(v, int) and not isinstance(v, bool):
            try:
                return float(v)  # 12 is a fine amount; strict mode would reject the int
            except OverflowError:  # an int beyond any float: only Python callers can send one
                raise ValueError("amount is out of range") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("amount must be a finite number")
        return v

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, v: str) -> str:
        if v not in CURRENCIES:
            raise ValueError(f"unknown currency; expected one of {', '.join(CURRENCIES)}")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str | None) -> str | None:
        if v is not None and v not in DEVICES:
            raise ValueError(f"unknown device; expected one of {', '.join(DEVICES)} or null")
        return v

    @field_validator("ts")
    @classmethod
    def _not_far_future(cls, v: int) -> int:
        limit = clock_ms() + MAX_FUTURE_SKEW_MS
        if v > limit:
            raise ValueError(f"ts is more than 24 h ahead of this clock ({limit - MAX_FUTURE_SKEW_MS})")
        return v


# Refused records, in every DuckDB file that takes events (the store, the db mode's segments).
DEAD_LETTERS_DDL = """
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id VARCHAR PRIMARY KEY,  -- where it came from, e.g. kafka:topic:partition:offset
    source VARCHAR NOT NULL,
    key BLOB,
    payload BLOB,
    field VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL DEFAULT current_timestamp
)
"""
