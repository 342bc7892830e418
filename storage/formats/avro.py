"""Avro (fastavro): binary, row-major, the writer's schema embedded in the file header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

import fastavro
import pyarrow as pa

from playground.errors import PlaygroundError
from storage.formats.base import FormatCodec, Range, Row

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


class AvroCodec(FormatCodec):
    name = "avro"
    suffix: ClassVar[str] = ".avro"
    binary: ClassVar[bool] = True
    columnar: ClassVar[bool] = False
    self_describing: ClassVar[bool] = True

    def write(self, table: pa.Table, path: Path) -> None:
        schema = fastavro.parse_schema(avro_schema_for(table.schema))
        with path.open("wb") as f:
            fastavro.writer(f, schema, table.to_pylist())

    @staticmethod
    def _open(f: BinaryIO) -> tuple[pa.Schema, Iterator[Row]]:
        """The Arrow schema from the file's embedded writer schema, and the records."""
        reader = fastavro.reader(f)
        schema = arrow_schema_from_avro(cast(dict[str, Any], reader.writer_schema))
        return schema, (cast(Row, r) for r in reader)

    def read_rows(self, path: Path) -> list[Row]:
        with path.open("rb") as f:
            return list(self._open(f)[1])

    def read_arrow(self, path: Path) -> pa.Table:
        with path.open("rb") as f:
            schema, records = self._open(f)
            return pa.Table.from_pylist(list(records), schema=schema)

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        with path.open("rb") as f:
            schema, records = self._open(f)
            values = [r[column] for r in records]
            return pa.chunked_array([pa.array(values, schema.field(column).type)])

    def read_filtered(self, path: Path, where: Range) -> pa.Table:
        with path.open("rb") as f:
            schema, records = self._open(f)
            rows = [r for r in records if where.accepts(r[where.column])]
            return pa.Table.from_pylist(rows, schema=schema)

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        with path.open("rb") as f:
            for r in self._open(f)[1]:
                if r[key] == value:  # early exit: records are read one at a time
                    return dict(r)
        return None
