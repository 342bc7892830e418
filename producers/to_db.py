"""Through a database: the producer appends to DuckDB *segment files* it alone owns.

Why segments. DuckDB lets one process open a file read-write, and while it does,
no other process may open that file at all, not even to read. Two processes
sharing one file would have to take turns (close, let the reader in, reopen),
and every turn is a lock error waiting to happen under load. Instead the writer
owns a private file, ``seg-<n>.duckdb.open``, inserts committed batches into it,
and every ``roll_ms`` *seals* it: close (DuckDB checkpoints, so the file is
complete and the WAL gone) and rename to ``seg-<n>.duckdb``. A sealed segment is
never written again, so any number of readers may open it read-only; an open
segment is never touched by a reader. No lock can ever be contended.

The cost, which ``playground flow db`` measures: an event becomes visible only
once its segment is sealed and the reader's next poll finds it, so latency is
about ``roll_ms / 2 + poll_ms / 2`` plus the seal (checkpoint) and open times,
and each segment costs a file create and a checkpoint.

Records are validated at this ingress: a bad one goes to the segment's
``dead_letters`` table with the failing field and reason, never into ``events``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.receipts import now_us
from dataflow_playground.core.schema import DEAD_LETTERS_DDL, Event, arrow_schema, duckdb_columns
from dataflow_playground.core.validation import Rejection, validate_record
from dataflow_playground.producers.base import FlowWriter

SEALED_SUFFIX = ".duckdb"
OPEN_SUFFIX = ".duckdb.open"
EVENTS_DDL = f"CREATE TABLE events (\n    {duckdb_columns()},\n    sent_us BIGINT NOT NULL\n)"
_SCHEMA = arrow_schema().append(pa.field("sent_us", pa.int64(), nullable=False))


def segment_name(n: int) -> str:
    return f"seg-{n:08d}"


def sealed_segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"seg-*{SEALED_SUFFIX}"))


class DuckDBSegmentWriter(FlowWriter):
    mode = "db"

    def __init__(self, folder: Path, roll_ms: float = 50.0) -> None:
        super().__init__()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.roll_s = roll_ms / 1000.0
        # Resume numbering after whatever a previous writer sealed.
        existing = [int(p.name[4:12]) for p in sealed_segments(folder)]
        self._next = max(existing, default=-1) + 1
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self.segments = 0

    def _open(self) -> duckdb.DuckDBPyConnection:
        self._path = self.folder / (segment_name(self._next) + OPEN_SUFFIX)
        self._path.unlink(missing_ok=True)  # a half-written leftover of a crashed writer
        try:
            conn = duckdb.connect(str(self._path))
        except duckdb.Error as err:
            raise PlaygroundError(f"cannot create DuckDB segment {self._path}: {err}. "
                                  "Is another writer using this folder?") from err
        conn.execute(EVENTS_DDL)
        conn.execute(DEAD_LETTERS_DDL)
        self._conn, self._opened_at = conn, time.monotonic()
        return conn

    def seal(self) -> None:
        if self._conn is None or self._path is None:
            return
        self._conn.close()  # checkpoints: the file is now complete on its own
        os.replace(self._path, self.folder / (segment_name(self._next) + SEALED_SUFFIX))
        self._conn, self._path = None, None
        self._next += 1
        self.segments += 1

    def send(self, events: Sequence[dict[str, Any]]) -> None:
        good: list[Event] = []
        dead: list[tuple[str, str, bytes, str, str]] = []
        for i, record in enumerate(events):
            result = validate_record(record)
            if isinstance(result, Rejection):
                dead.append((f"db:{self._next}:{self.stats.events + i}", "db", repr(record).encode(),
                             result.field, result.reason))
                self.stats.reasons[result.field] += 1
            else:
                good.append(result)
        conn = self._conn or self._open()
        sent = now_us()
        if good:
            table = pa.Table.from_pylist(
                [{**e.model_dump(), "sent_us": sent} for e in good], schema=_SCHEMA)
            conn.register("incoming", table)
            conn.execute("INSERT INTO events SELECT * FROM incoming")
            conn.unregister("incoming")
        if dead:
            conn.executemany("INSERT INTO dead_letters (dead_letter_id, source, payload, field, reason)"
                             " VALUES (?, ?, ?, ?, ?)", dead)
        self.stats.accepted += len(good)
        self.stats.rejected += len(dead)
        if time.monotonic() - self._opened_at >= self.roll_s:
            self.seal()

    def close(self) -> None:
        self.seal()
