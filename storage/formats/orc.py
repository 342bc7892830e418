"""ORC: binary, column-major (stripes of columns), from the Hive world."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.orc as pa_orc

from dataflow_playground.storage.formats.base import FormatCodec


class OrcCodec(FormatCodec):
    name = "orc-zstd"
    suffix: ClassVar[str] = ".orc"
    binary: ClassVar[bool] = True
    columnar: ClassVar[bool] = True
    self_describing: ClassVar[bool] = True
    # pyarrow's ORC reader has no filter argument, so filtering happens after the read.
    pushdown: ClassVar[bool] = False

    def write(self, table: pa.Table, path: Path) -> None:
        pa_orc.write_table(table, path, compression="zstd")

    def read_arrow(self, path: Path) -> pa.Table:
        return pa_orc.read_table(path)

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        return pa_orc.read_table(path, columns=[column]).column(column)
