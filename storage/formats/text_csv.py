"""CSV: text, row-major, no types and no null marker in the file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from dataflow_playground.storage.formats.base import FormatCodec, Row


class CsvCodec(FormatCodec):
    name = "csv"
    suffix: ClassVar[str] = ".csv"
    binary: ClassVar[bool] = False
    columnar: ClassVar[bool] = False
    self_describing: ClassVar[bool] = False

    def write(self, table: pa.Table, path: Path) -> None:
        pa_csv.write_csv(table, path)

    def read_arrow(self, path: Path) -> pa.Table:
        # Inference, as pandas.read_csv does: the file itself carries no types.
        return pa_csv.read_csv(path)

    def read_rows(self, path: Path) -> list[Row]:
        # What the standard library gives a Python user: every value a string.
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        # The tokenizer still walks every byte; only the conversion is skipped.
        opts = pa_csv.ConvertOptions(include_columns=[column])
        return pa_csv.read_csv(path, convert_options=opts).column(column)

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        # Stream record batches and stop at the first batch holding the key.
        with pa_csv.open_csv(path) as reader:
            for batch in reader:
                hit = batch.filter(pc.equal(batch.column(key), value))
                if hit.num_rows:
                    return dict(hit.slice(0, 1).to_pylist()[0])
        return None
