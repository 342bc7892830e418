"""DuckDB: a column store with vectorised execution, built for scans and aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from dataflow_playground.storage.relational.base import EngineError, RelationalEngine


class DuckDBEngine(RelationalEngine):
    name = "duckdb"
    storage = "column"
    _conn: duckdb.DuckDBPyConnection | None = None

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise EngineError(f"{self.name}: not connected; use `with engine:` or connect()")
        return self._conn

    def connect(self) -> None:
        self._conn = duckdb.connect(str(self.path))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, list(params)).fetchall()

    def bulk_load(self, table: str, data: pa.Table) -> None:
        # DuckDB scans the Arrow table in place: no Python row objects at all.
        self.conn.register("incoming", data)
        try:
            cols = ", ".join(data.column_names)
            self.run_transaction([(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming", ())])
        finally:
            self.conn.unregister("incoming")

    def run_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        self.conn.execute("BEGIN TRANSACTION")
        try:
            for sql, params in statements:
                self.conn.execute(sql, list(params))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
