"""JSON lines: one JSON object per line; text, row-major, types inferred on read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from dataflow_playground.storage.formats.base import FormatCodec, Range, Row


class JsonLinesCodec(FormatCodec):
    name = "jsonl"
    suffix: ClassVar[str] = ".jsonl"
    binary: ClassVar[bool] = False
    columnar: ClassVar[bool] = False
    self_describing: ClassVar[bool] = False  # names travel with each row, types do not

    def write(self, table: pa.Table, path: Path) -> None:
        dump = orjson.dumps
        with path.open("wb") as f:
            for batch in table.to_batches(max_chunksize=10_000):
                f.write(b"".join(dump(r, option=orjson.OPT_APPEND_NEWLINE)
                                 for r in batch.to_pylist()))

    def read_arrow(self, path: Path) -> pa.Table:
        # Arrow's C++ parser infers types the way most JSON readers do: ints, floats,
        # strings, and timestamps it recognises (converted to UTC, zone dropped).
        return pa_json.read_json(path)

    def read_rows(self, path: Path) -> list[Row]:
        loads = orjson.loads
        with path.open("rb") as f:
            return [loads(line) for line in f]

    def read_filtered(self, path: Path, where: Range) -> pa.Table:
        rows = [r for r in self.read_rows(path) if where.accepts(r.get(where.column))]
        return pa.Table.from_pylist(rows)

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        loads = orjson.loads
        with path.open("rb") as f:
            for line in f:  # early exit: a row format can stop at the first hit
                row = loads(line)
                if row.get(key) == value:
                    return dict(row)
        return None
