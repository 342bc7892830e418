"""Row store vs column store: SQLite (OLTP) and DuckDB (OLAP) behind one interface."""

from dataflow_playground.storage.relational.base import RelationalEngine
from dataflow_playground.storage.relational.duckdb_engine import DuckDBEngine
from dataflow_playground.storage.relational.sqlite_engine import SQLiteEngine

ENGINES: dict[str, type[RelationalEngine]] = {"sqlite": SQLiteEngine, "duckdb": DuckDBEngine}

__all__ = ["ENGINES", "DuckDBEngine", "RelationalEngine", "SQLiteEngine"]
