"""The one interface every format codec implements.

A codec writes an Arrow table to a file and reads it back in the ways the lab
measures: whole file into Arrow, whole file into Python rows, one column, a
filtered subset and a one-row lookup. The defaults below are the honest
fallback for formats that cannot do better (parse everything, then select);
a codec overrides a method only where its format really offers a shortcut
(column projection, predicate pushdown, early exit on a row stream).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

Row = dict[str, Any]


@dataclass(frozen=True)
class Range:
    """The filter the lab measures: ``low <= column < high`` (``None`` = unbounded)."""

    column: str
    low: Any = None
    high: Any = None

    def mask(self, table: pa.Table) -> pa.ChunkedArray:
        col = table.column(self.column)
        keep = pc.is_valid(col)
        if self.low is not None:
            keep = pc.and_(keep, pc.greater_equal(col, self.low))
        if self.high is not None:
            keep = pc.and_(keep, pc.less(col, self.high))
        return keep

    def parquet_filters(self) -> list[tuple[str, str, Any]]:
        out: list[tuple[str, str, Any]] = []
        if self.low is not None:
            out.append((self.column, ">=", self.low))
        if self.high is not None:
            out.append((self.column, "<", self.high))
        return out

    def accepts(self, value: Any) -> bool:
        if value is None:
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value < self.high)


class FormatCodec(ABC):
    """Write and read one file format. Subclasses set the class attributes."""

    name: str
    suffix: ClassVar[str]
    binary: ClassVar[bool]
    columnar: ClassVar[bool]
    # True when read_filtered skips data using stored statistics, not just after parsing.
    pushdown: ClassVar[bool] = False
    # True when the file carries its own types (no outside schema needed to read it).
    self_describing: ClassVar[bool]

    @abstractmethod
    def write(self, table: pa.Table, path: Path) -> None:
        """Write ``table`` to ``path`` (overwriting)."""

    @abstractmethod
    def read_arrow(self, path: Path) -> pa.Table:
        """The whole file as an Arrow table, types as the format gives them back."""

    def read_rows(self, path: Path) -> list[Row]:
        """The whole file as Python dicts: the cost of building Python objects included."""
        return self.read_arrow(path).to_pylist()

    def read_column(self, path: Path, column: str) -> pa.ChunkedArray:
        """One column. Row formats must still parse every field of every row."""
        return self.read_arrow(path).column(column)

    def read_filtered(self, path: Path, where: Range) -> pa.Table:
        """The rows that satisfy ``where``."""
        table = self.read_arrow(path)
        return table.filter(where.mask(table))

    def lookup(self, path: Path, key: str, value: Any) -> Row | None:
        """The first row whose ``key`` equals ``value``, or None."""
        table = self.read_arrow(path)
        hit = table.filter(pc.equal(table.column(key), value))
        return hit.slice(0, 1).to_pylist()[0] if hit.num_rows else None
