"""SQLite: a row store with B-tree tables and indexes, built for small transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dataflow_playground.storage.relational.base import EngineError, RelationalEngine


class SQLiteEngine(RelationalEngine):
    name = "sqlite"
    storage = "row"
    _conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EngineError(f"{self.name}: not connected; use `with engine:` or connect()")
        return self._conn

    def connect(self) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so transactions are explicit.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        # WAL with synchronous=FULL keeps every commit durable (fsync'd), like DuckDB's WAL.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def after_schema(self) -> None:
        # The OLTP habit: an index for the range query, since rows are stored by tx_id.
        self.execute("CREATE INDEX transactions_ts ON transactions (ts)")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def bulk_load(self, table: str, data: pa.Table) -> None:
        cols = ", ".join(data.column_names)
        marks = ", ".join("?" * data.num_columns)
        rows = zip(*(c.to_pylist() for c in data.columns), strict=True)
        self.run_transaction_many(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)

    def run_transaction_many(self, sql: str, rows: Any) -> None:
        self.conn.execute("BEGIN")
        try:
            self.conn.executemany(sql, rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def run_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        self.conn.execute("BEGIN")
        try:
            for sql, params in statements:
                self.conn.execute(sql, tuple(params))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
