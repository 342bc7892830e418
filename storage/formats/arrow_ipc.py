"""Arrow IPC (Feather v2): Arrow's own memory layout on disk, read by memory-mapping."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.feather as feather

from dataflow_playground.storage.formats.base import FormatCodec

BATCH_ROWS = 64_000


class ArrowIpcCodec(FormatCodec):
    name = "arrow-ipc"
    suffix: ClassVar[str] = ".arrow"
    binary: ClassVar[bool] = True
    columnar: ClassVar[bool] = True
    self_describing: ClassVar[bool] = True

    def write(self, table: pa.Table, path: Path) -> None:
        # Uncompressed on purpose: then a read is a memory map, no decoding at all.
        feather.write_feather(table, path, compression="uncompressed", chunksize=BATCH_ROWS)

    def read_arrow(self, path: Path) -> pa.Table:
        # The table's buffers point into the map; the OS pages bytes in on first touch.
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        return self.read_arrow(path).column(column)
