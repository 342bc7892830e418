"""Pickle: Python's own object serialization, here of a list of row dicts.

Security: unpickling runs arbitrary code chosen by whoever wrote the file. The
lab only ever unpickles files it has just written itself in its own temporary
folder; never point this codec at a file from anywhere else.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from dataflow_playground.storage.formats.base import FormatCodec, Range, Row


class PickleCodec(FormatCodec):
    name = "pickle"
    suffix: ClassVar[str] = ".pkl"
    binary: ClassVar[bool] = True
    columnar: ClassVar[bool] = False
    self_describing: ClassVar[bool] = True  # Python types travel with every object

    def write(self, table: pa.Table, path: Path) -> None:
        with path.open("wb") as f:
            pickle.dump(table.to_pylist(), f, protocol=pickle.HIGHEST_PROTOCOL)

    def read_rows(self, path: Path) -> list[Row]:
        with path.open("rb") as f:
            # Safe only because the lab wrote this file a moment ago (see module docstring).
            rows: list[Row] = pickle.load(f)
        return rows

    def read_arrow(self, path: Path) -> pa.Table:
        return pa.Table.from_pylist(self.read_rows(path))

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        return pa.chunked_array([pa.array([r[column] for r in self.read_rows(path)])])

    def read_filtered(self, path: Path, where: Range) -> pa.Table:
        return pa.Table.from_pylist([r for r in self.read_rows(path)
                                     if where.accepts(r.get(where.column))])

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        # A pickled list is one object: there is no way to stop early.
        return next((r for r in self.read_rows(path) if r.get(key) == value), None)
