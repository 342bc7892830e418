"""The schema's derived forms agree with FIELDS, field by field."""

from __future__ import annotations

import duckdb
import fastavro
import pyarrow as pa
from google.protobuf.descriptor import FieldDescriptor

from dataflow_playground.core.proto import events_pb2
from dataflow_playground.core.schema import FIELD_NAMES, FIELDS, Event, arrow_schema, avro_schema, duckdb_ddl

ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
         "bool": pa.bool_(), "timestamp_ms": pa.int64()}
DUCKDB = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN",
          "timestamp_ms": "BIGINT"}
PROTO = {"int64": FieldDescriptor.TYPE_INT64, "float64": FieldDescriptor.TYPE_DOUBLE,
         "string": FieldDescriptor.TYPE_STRING, "bool": FieldDescriptor.TYPE_BOOL,
         "timestamp_ms": FieldDescriptor.TYPE_INT64}
PYTHON = {"int64": int, "float64": float, "string": str, "bool": bool, "timestamp_ms": int}


def test_arrow_schema_matches_fields() -> None:
    schema = arrow_schema()
    assert schema.names == list(FIELD_NAMES)
    for spec in FIELDS:
        f = schema.field(spec.name)
        assert f.type == ARROW[spec.type], spec.name
        assert f.nullable == spec.nullable, spec.name


def test_avro_schema_matches_fields_and_parses() -> None:
    schema = avro_schema()
    fastavro.parse_schema(schema)
    assert [f["name"] for f in schema["fields"]] == list(FIELD_NAMES)
    for spec, f in zip(FIELDS, schema["fields"], strict=True):
        assert isinstance(f["type"], list) == spec.nullable, spec.name
        base = f["type"][1] if spec.nullable else f["type"]
        if spec.type == "timestamp_ms":
            assert base == {"type": "long", "logicalType": "timestamp-millis"}


def test_duckdb_ddl_matches_fields() -> None:
    con = duckdb.connect()
    con.execute(duckdb_ddl("events"))
    rows = con.execute("DESCRIBE events").fetchall()
    assert [r[0] for r in rows] == list(FIELD_NAMES)
    for spec, row in zip(FIELDS, rows, strict=True):
        assert row[1] == DUCKDB[spec.type], spec.name
        assert (row[2] == "YES") == spec.nullable, spec.name
    assert rows[0][3] == "PRI"


def test_pydantic_model_matches_fields() -> None:
    model_fields = Event.model_fields
    assert tuple(model_fields) == FIELD_NAMES
    for spec in FIELDS:
        ann = model_fields[spec.name].annotation
        expected = PYTHON[spec.type]
        assert ann == (expected | None if spec.nullable else expected), spec.name


def test_proto_matches_fields() -> None:
    fields = events_pb2.Event.DESCRIPTOR.fields
    assert [f.name for f in fields] == list(FIELD_NAMES)
    for number, (spec, f) in enumerate(zip(FIELDS, fields, strict=True), start=1):
        assert f.number == number, spec.name
        assert f.type == PROTO[spec.type], spec.name
        assert f.has_presence == spec.nullable or spec.type != "string", spec.name
