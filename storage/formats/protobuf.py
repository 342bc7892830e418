"""Protobuf, length-delimited: each message prefixed by its size as a varint.

Protobuf records carry field numbers, not names or types, so the reader needs
the message definition. Like a schema registry entry, the codec stores that
definition next to the data (``<file>.desc``, a serialized FileDescriptorSet);
the data file's byte count is what the lab reports.

The payment event uses the generated ``events_pb2.Event``. Any other table
(the fidelity probe) gets a proto2 message built from its Arrow schema, where
every field is optional so nulls survive; timestamps become int64 microseconds
since the epoch, because a message has no timestamp-with-zone type.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.proto import events_pb2
from dataflow_playground.core.schema import arrow_schema
from dataflow_playground.storage.formats.base import FormatCodec, Range, Row

_PROTO_TYPES: dict[pa.DataType, int] = {
    pa.int64(): FieldDescriptor.TYPE_INT64,
    pa.float64(): FieldDescriptor.TYPE_DOUBLE,
    pa.string(): FieldDescriptor.TYPE_STRING,
    pa.bool_(): FieldDescriptor.TYPE_BOOL,
}
_ARROW_TYPES: dict[int, pa.DataType] = {v: k for k, v in _PROTO_TYPES.items()}


class ProtobufSchemaError(PlaygroundError):
    """A table or descriptor this codec cannot map between Arrow and protobuf."""


def encode_varint(n: int) -> bytes:
    """Base-128 varint, least significant group first (the protobuf wire encoding)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint starting at ``pos`` and the position just after it."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufSchemaError("truncated length prefix: the file ends inside a varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _descriptor_set(file_proto: descriptor_pb2.FileDescriptorProto) -> bytes:
    return descriptor_pb2.FileDescriptorSet(file=[file_proto]).SerializeToString()


def message_for(schema: pa.Schema) -> tuple[type[Message], bytes]:
    """The message class for rows of ``schema`` and its descriptor set (for the sidecar)."""
    if schema.equals(arrow_schema()):
        fp = descriptor_pb2.FileDescriptorProto()
        events_pb2.DESCRIPTOR.CopyToProto(fp)
        return events_pb2.Event, _descriptor_set(fp)
    digest = hashlib.sha1(str(schema).encode()).hexdigest()[:12]
    fp = descriptor_pb2.FileDescriptorProto(name=f"lab_{digest}.proto", syntax="proto2",
                                            package=f"dataflow.playground.lab{digest}")
    msg = fp.message_type.add(name="Record")
    for number, f in enumerate(schema, start=1):
        t = pa.int64() if pa.types.is_timestamp(f.type) else f.type
        if t not in _PROTO_TYPES:
            raise ProtobufSchemaError(f"no protobuf mapping for column {f.name!r} of type "
                                      f"{f.type}; add one to storage/formats/protobuf.py")
        msg.field.add(name=f.name, number=number, type=_PROTO_TYPES[t],
                      label=FieldDescriptor.LABEL_OPTIONAL)
    return _class_from(_descriptor_set(fp), f"{fp.package}.Record"), _descriptor_set(fp)


def _class_from(descriptor_set: bytes, full_name: str) -> type[Message]:
    if full_name == events_pb2.Event.DESCRIPTOR.full_name:
        return events_pb2.Event
    pool = descriptor_pool.DescriptorPool()
    for fp in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        pool.Add(fp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def _rows_for_wire(table: pa.Table) -> list[Row]:
    cols = {}
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type):
            col = col.cast(pa.timestamp("us", tz=f.type.tz)).cast(pa.int64())
        cols[f.name] = col
    return pa.table(cols).to_pylist()


class ProtobufCodec(FormatCodec):
    name = "protobuf"
    suffix: ClassVar[str] = ".pb"
    binary: ClassVar[bool] = True
    columnar: ClassVar[bool] = False
    self_describing: ClassVar[bool] = False

    @staticmethod
    def sidecar(path: Path) -> Path:
        return path.with_name(path.name + ".desc")

    def write(self, table: pa.Table, path: Path) -> None:
        cls, descriptor_set = message_for(table.schema)
        self.sidecar(path).write_text(json.dumps({
            "message": cls.DESCRIPTOR.full_name,
            "descriptor_set": base64.b64encode(descriptor_set).decode(),
        }))
        with path.open("wb") as f:
            for row in _rows_for_wire(table):
                data = cls(**{k: v for k, v in row.items() if v is not None}).SerializeToString()
                f.write(encode_varint(len(data)))
                f.write(data)

    def _message_class(self, path: Path) -> type[Message]:
        try:
            meta = json.loads(self.sidecar(path).read_text())
        except FileNotFoundError as err:
            raise ProtobufSchemaError(f"{path} has no descriptor sidecar "
                                      f"{self.sidecar(path).name}; write it with this codec") from err
        return _class_from(base64.b64decode(meta["descriptor_set"]), meta["message"])

    def _messages(self, path: Path) -> Iterator[Message]:
        cls = self._message_class(path)
        buf = path.read_bytes()
        pos, end = 0, len(buf)
        while pos < end:
            size, pos = decode_varint(buf, pos)
            if pos + size > end:
                raise ProtobufSchemaError(f"{path}: last message truncated ({end - pos} of "
                                          f"{size} bytes)")
            yield cls.FromString(buf[pos:pos + size])
            pos += size

    @staticmethod
    def _fields(desc: Any) -> list[tuple[str, bool]]:
        return [(f.name, f.has_presence) for f in desc.fields]

    @staticmethod
    def _to_row(m: Message, fields: list[tuple[str, bool]]) -> Row:
        return {n: (getattr(m, n) if not p or m.HasField(n) else None) for n, p in fields}

    def _schema(self, path: Path) -> pa.Schema:
        desc = self._message_class(path).DESCRIPTOR
        return pa.schema([pa.field(f.name, _ARROW_TYPES[f.type], nullable=f.has_presence)
                          for f in desc.fields])

    def read_rows(self, path: Path) -> list[Row]:
        fields = self._fields(self._message_class(path).DESCRIPTOR)
        return [self._to_row(m, fields) for m in self._messages(path)]

    def read_arrow(self, path: Path) -> pa.Table:
        schema = self._schema(path)
        cols: dict[str, list[Any]] = {f.name: [] for f in schema}
        fields = self._fields(self._message_class(path).DESCRIPTOR)
        appends = [(n, p, cols[n].append) for n, p in fields]
        for m in self._messages(path):
            for n, p, add in appends:
                add(getattr(m, n) if not p or m.HasField(n) else None)
        return pa.table({n: pa.array(v, schema.field(n).type) for n, v in cols.items()},
                        schema=schema)

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        # Every message is still parsed whole: field numbers, not offsets, find a value.
        field = self._schema(path).field(column)
        values = [getattr(m, column) if not field.nullable or m.HasField(column) else None
                  for m in self._messages(path)]
        return pa.chunked_array([pa.array(values, field.type)])

    def read_filtered(self, path: Path, where: Range) -> pa.Table:
        fields = self._fields(self._message_class(path).DESCRIPTOR)
        rows = [r for r in (self._to_row(m, fields) for m in self._messages(path))
                if where.accepts(r[where.column])]
        return pa.Table.from_pylist(rows, schema=self._schema(path))

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        fields = self._fields(self._message_class(path).DESCRIPTOR)
        for m in self._messages(path):
            if getattr(m, key) == value:
                return self._to_row(m, fields)
        return None
