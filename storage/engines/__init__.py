"""Row store vs column store: SQLite (OLTP) and DuckDB (OLAP) behind one interface."""

from storage.engines.base import RelationalEngine
from storage.engines.duckdb_engine import DuckDBEngine
from storage.engines.sqlite_engine import SQLiteEngine

ENGINES: dict[str, type[RelationalEngine]] = {"sqlite": SQLiteEngine, "duckdb": DuckDBEngine}

__all__ = ["ENGINES", "DuckDBEngine", "RelationalEngine", "SQLiteEngine"]
