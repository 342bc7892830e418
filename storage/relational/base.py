"""One relational interface over a row store and a column store.

The SQL is the same for both engines (both speak enough standard SQL); what
differs is how each connects, bulk-loads and is tuned, which the subclasses own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataflow_playground.core.errors import PlaygroundError

DDL = (
    """CREATE TABLE users (user_id BIGINT PRIMARY KEY, home_country VARCHAR NOT NULL)""",
    """CREATE TABLE merchants (merchant_id BIGINT PRIMARY KEY, category VARCHAR NOT NULL,
                               country VARCHAR NOT NULL)""",
    """CREATE TABLE transactions (
           tx_id BIGINT PRIMARY KEY,
           user_id BIGINT NOT NULL REFERENCES users (user_id),
           merchant_id BIGINT NOT NULL REFERENCES merchants (merchant_id),
           amount DOUBLE NOT NULL, currency VARCHAR NOT NULL,
           ts BIGINT NOT NULL, is_fraud BOOLEAN NOT NULL)""",
)
INSERT_TX = ("INSERT INTO transactions (tx_id, user_id, merchant_id, amount, currency, ts, is_fraud)"
             " VALUES (?, ?, ?, ?, ?, ?, ?)")
POINT_LOOKUP = "SELECT * FROM transactions WHERE tx_id = ?"
RANGE_SCAN = "SELECT count(*), sum(amount) FROM transactions WHERE ts >= ? AND ts < ?"
GROUP_BY = ("SELECT merchant_id, count(*), sum(amount), avg(amount) FROM transactions "
            "GROUP BY merchant_id")
JOIN = ("SELECT u.home_country, m.category, count(*), sum(t.amount), "
        "sum(CASE WHEN t.is_fraud THEN 1 ELSE 0 END) "
        "FROM transactions t JOIN users u ON u.user_id = t.user_id "
        "JOIN merchants m ON m.merchant_id = t.merchant_id "
        "GROUP BY u.home_country, m.category ORDER BY u.home_country, m.category")
COUNT_TX = "SELECT count(*) FROM transactions"


class EngineError(PlaygroundError):
    """A storage engine refused an operation the lab expected to work."""


class RelationalEngine(ABC):
    """A connection to one database file, with the lab's workload as methods."""

    name: str
    storage: str  # "row" or "column"

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode and return all rows."""

    @abstractmethod
    def bulk_load(self, table: str, data: pa.Table) -> None:
        """Load many rows in one transaction, the engine's fastest honest way."""

    @abstractmethod
    def run_transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run statements atomically: all commit, or on any error none do (and re-raise)."""

    def create_schema(self) -> None:
        for ddl in DDL:
            self.execute(ddl)
        self.after_schema()

    def after_schema(self) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Engine-specific extras (indexes) after the tables exist."""

    def insert_one(self, row: Sequence[Any]) -> None:
        """One transaction holding one insert, committed (the OLTP unit of work)."""
        self.run_transaction([(INSERT_TX, row)])

    def point_lookup(self, tx_id: int) -> list[tuple[Any, ...]]:
        return self.execute(POINT_LOOKUP, (tx_id,))

    def range_scan(self, ts_low: int, ts_high: int) -> list[tuple[Any, ...]]:
        return self.execute(RANGE_SCAN, (ts_low, ts_high))

    def group_by(self) -> list[tuple[Any, ...]]:
        return self.execute(GROUP_BY)

    def join(self) -> list[tuple[Any, ...]]:
        return self.execute(JOIN)

    def count_transactions(self) -> int:
        return int(self.execute(COUNT_TX)[0][0])

    def __enter__(self) -> RelationalEngine:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
