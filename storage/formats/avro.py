"""Avro (fastavro): binary, row-major, the writer's schema embedded in the file header.

The events are written with the project's own Avro schema (:func:`core.schema.avro_schema`:
record ``dataflow.playground.Transaction``, ``ts`` as ``timestamp-millis``), derived from the
one event schema like every other form of it; reading such a file gives the project's Arrow
schema back (``ts`` as epoch milliseconds). Any other table (the fidelity probes) gets a
schema derived from its Arrow types.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

import fastavro
import pyarrow as pa

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.schema import FIELDS, arrow_schema, avro_schema
from dataflow_playground.storage.formats.base import FormatCodec, Row

_TO_AVRO: dict[pa.DataType, str] = {
    pa.int64(): "long", pa.int32(): "int", pa.float64(): "double", pa.float32(): "float",
    pa.string(): "string", pa.large_string(): "string", pa.bool_(): "boolean",
}
_FROM_AVRO: dict[str, pa.DataType] = {
    "long": pa.int64(), "int": pa.int32(), "double": pa.float64(), "float": pa.float32(),
    "string": pa.string(), "boolean": pa.bool_(),
    # Avro's timestamps are instants in UTC; a zone has nowhere to go.
    "timestamp-millis": pa.timestamp("ms", tz="UTC"),
    "timestamp-micros": pa.timestamp("us", tz="UTC"),
    "local-timestamp-millis": pa.timestamp("ms"),
    "local-timestamp-micros": pa.timestamp("us"),
}


class AvroSchemaError(PlaygroundError):
    """An Arrow column has a type this lab does not map to Avro."""


def _avro_type(t: pa.DataType) -> Any:
    if pa.types.is_timestamp(t):
        unit = "millis" if t.unit == "ms" else "micros"
        return {"type": "long",
                "logicalType": f"timestamp-{unit}" if t.tz else f"local-timestamp-{unit}"}
    if t in _TO_AVRO:
        return _TO_AVRO[t]
    raise AvroSchemaError(f"no Avro mapping for Arrow type {t}; add one to storage/formats/avro.py")


def avro_schema_for(schema: pa.Schema, name: str = "Record") -> dict[str, Any]:
    """An Avro record schema with one field per Arrow column; nullable -> union with null."""
    fields = []
    for f in schema:
        t = _avro_type(f.type)
        fields.append({"name": f.name, "type": ["null", t] if f.nullable else t})
    return {"type": "record", "name": name, "namespace": "dataflow.playground", "fields": fields}


def arrow_schema_from_avro(avro: dict[str, Any]) -> pa.Schema:
    out = []
    for f in avro["fields"]:
        t = f["type"]
        nullable = isinstance(t, list)
        if nullable:
            t = next(x for x in t if x != "null")
        key = str(t.get("logicalType", t["type"])) if isinstance(t, dict) else str(t)
        if key not in _FROM_AVRO:
            raise AvroSchemaError(f"no Arrow mapping for Avro type {key!r} of field {f['name']!r}")
        out.append(pa.field(f["name"], _FROM_AVRO[key], nullable=nullable))
    return pa.schema(out)


_EVENTS = cast(dict[str, Any], fastavro.parse_schema(avro_schema()))
# Event fields that Avro reads back as datetimes and the project holds as epoch milliseconds.
_EPOCH_MS_FIELDS = tuple(f.name for f in FIELDS if f.type == "timestamp_ms")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _target_schema(writer_schema: dict[str, Any]) -> tuple[pa.Schema, pa.Schema | None]:
    """The Arrow schema the file's records arrive in, and the event schema to cast to (if events)."""
    read_as = arrow_schema_from_avro(writer_schema)
    return read_as, (arrow_schema() if writer_schema.get("name") == _EVENTS["name"] else None)


class AvroCodec(FormatCodec):
    name = "avro"
    suffix: ClassVar[str] = ".avro"
    binary: ClassVar[bool] = True
    columnar: ClassVar[bool] = False
    self_describing: ClassVar[bool] = True

    def write(self, table: pa.Table, path: Path) -> None:
        events = table.schema.equals(arrow_schema())
        schema = _EVENTS if events else fastavro.parse_schema(avro_schema_for(table.schema))
        with path.open("wb") as f:
            fastavro.writer(f, schema, table.to_pylist())

    @staticmethod
    def _open(f: BinaryIO) -> tuple[pa.Schema, pa.Schema | None, Iterator[Row]]:
        """The Arrow schema of the records as read, the event schema (if events), the records."""
        reader = fastavro.reader(f)
        read_as, events = _target_schema(cast(dict[str, Any], reader.writer_schema))
        return read_as, events, (cast(Row, r) for r in reader)

    @staticmethod
    def _as_event_row(row: Row) -> Row:
        for name in _EPOCH_MS_FIELDS:
            if row[name] is not None:
                row[name] = (row[name] - _EPOCH) // _MS
        return row

    def read_rows(self, path: Path) -> list[Row]:
        with path.open("rb") as f:
            _, events, records = self._open(f)
            return [self._as_event_row(r) for r in records] if events is not None else list(records)

    def read_arrow(self, path: Path) -> pa.Table:
        with path.open("rb") as f:
            read_as, events, records = self._open(f)
            table = pa.Table.from_pylist(list(records), schema=read_as)
            return table.cast(events) if events is not None else table

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        with path.open("rb") as f:
            read_as, events, records = self._open(f)
            values = pa.array([r[column] for r in records], read_as.field(column).type)
            if events is not None:
                values = values.cast(events.field(column).type)
            return pa.chunked_array([values])

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        with path.open("rb") as f:
            _, events, records = self._open(f)
            for r in records:
                if r[key] == value:  # early exit: records are read one at a time
                    return self._as_event_row(dict(r)) if events is not None else dict(r)
        return None
