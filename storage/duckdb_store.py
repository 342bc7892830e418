"""The DuckDB store: the ``events`` and ``dead_letters`` tables, written idempotently.

DuckDB allows one read-write process per file, so exactly one process owns a
store at a time (the sink, or the demo after the sink is done). Writes are
``INSERT ... ON CONFLICT DO NOTHING`` on the primary key, so a batch redelivered
after a crash adds nothing twice.

**A reused event_id is a duplicate, counted and kept, never silently dropped.** Records read
from Kafka go through :meth:`EventStore.write_records`, which tells two cases apart that the
primary key alone cannot:

- a *redelivery*: the very record was written before (a crash between the DuckDB write and
  the offset commit). Nothing new; not counted.
- a *duplicate*: a valid record read for the first time whose ``event_id`` is already stored
  (from another record), or repeated earlier in the same batch. Its event is not inserted
  (the first one stays), it is counted, and it is kept in ``duplicate_events`` (its source,
  event_id, key and payload), so nothing is lost and ``playground status`` can report it.

Which records were written before is known from ``source_positions``: per topic and
partition, the next offset after the last record written. It is updated in the same
transaction as the rows, so it is exact across crashes. Both tables are keyed so that a
redelivered batch adds nothing to them either. (A topic deleted and recreated under the
same name restarts its offsets below the stored position: its duplicates are then not
counted, though every event is still stored once.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from dataflow_playground.core.dead_letters import source_id
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.schema import DEAD_LETTERS_DDL, FIELD_NAMES, Event, arrow_schema, duckdb_ddl

# Valid records whose event_id was already stored: the first record with an id wins.
DUPLICATES_DDL = """
CREATE TABLE IF NOT EXISTS duplicate_events (
    source VARCHAR PRIMARY KEY,  -- the record not stored: kafka:topic:partition:offset
    event_id BIGINT NOT NULL,    -- already in events, from an earlier record
    key BLOB,
    payload BLOB NOT NULL,
    received_at TIMESTAMP NOT NULL DEFAULT current_timestamp
)
"""
# Per topic partition, the offset after the last record written: what was seen before.
POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS source_positions (
    topic VARCHAR NOT NULL,
    partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition)
)
"""


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: str
    source: str
    key: bytes | None
    payload: bytes
    field: str
    reason: str


_DEAD_SCHEMA = pa.schema([("dead_letter_id", pa.string()), ("source", pa.string()),
                          ("key", pa.binary()), ("payload", pa.binary()),
                          ("field", pa.string()), ("reason", pa.string())])
_DEAD_COLUMNS = tuple(_DEAD_SCHEMA.names)
_DUP_SCHEMA = pa.schema([("source", pa.string()), ("event_id", pa.int64()), ("key", pa.binary()),
                         ("payload", pa.binary())])


# A partition's offsets in one batch: (lowest offset, offset after the highest).
Span = tuple[int, int]


class SourceRecord(Protocol):
    """Where a valid event was read from (kafka-python's ``ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...


@dataclass(frozen=True)
class Duplicate:
    """A valid record not stored because its event_id already was."""

    source: str
    event_id: int
    key: bytes | None
    payload: bytes


@dataclass(frozen=True)
class WriteOutcome:
    inserted: int  # events newly inserted
    duplicates: list[Duplicate]  # first-time records whose event_id was already stored


@dataclass(frozen=True)
class StoreFigures:
    """Row counts of a store; ``None`` for a table this file does not have (an older store)."""

    events: int | None
    dead_letters: int | None
    duplicates: int | None


class StoreBusyError(PlaygroundError):
    """Another process holds the store's file, so it cannot be read now."""


def events_to_arrow(events: Sequence[Event]) -> pa.Table:
    columns = {name: [getattr(e, name) for e in events] for name in FIELD_NAMES}
    return pa.table(columns, schema=arrow_schema())


class EventStore:
    """One read-write connection to a DuckDB file (or ``:memory:``)."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as err:
            if read_only and "lock" in str(err).lower():
                raise StoreBusyError(
                    f"the store {self.path} is open for writing by another process, and DuckDB then "
                    f"lets no other process read it ({err}). Its figures can be read once that "
                    "process (e.g. a running sink, which prints its own on every commit) stops."
                ) from err
            raise PlaygroundError(
                f"cannot open DuckDB file {self.path}: {err}. DuckDB allows one writing process "
                "per file: stop the process holding it (e.g. a running sink) and retry."
            ) from err
        self._next_offset: dict[tuple[str, int], int] = {}
        if not read_only:
            self.conn.execute(duckdb_ddl("events"))
            self.conn.execute(DEAD_LETTERS_DDL)
            self.conn.execute(DUPLICATES_DDL)
            self.conn.execute(POSITIONS_DDL)
            # This process is the file's only writer, so the positions are kept in memory.
            self._next_offset = {(str(t), int(p)): int(n) for t, p, n in self.conn.execute(
                "SELECT topic, partition, next_offset FROM source_positions").fetchall()}

    def write(self, events: pa.Table | Sequence[Event],
              dead_letters: Sequence[DeadLetter] = ()) -> int:
        """Insert events and dead letters in one transaction; return events newly inserted.

        No duplicate accounting: for events not read from Kafka. The sink uses
        :meth:`write_records`.
        """
        table = events if isinstance(events, pa.Table) else events_to_arrow(events)
        inserted = 0
        self.conn.execute("BEGIN TRANSACTION")
        try:
            if table.num_rows:
                self.conn.register("incoming", table)
                # The count excludes rows skipped as conflicts: exactly the new ones.
                row = self.conn.execute(
                    "INSERT INTO events SELECT * FROM incoming ON CONFLICT DO NOTHING").fetchone()
                inserted = int(row[0]) if row else 0
                self.conn.unregister("incoming")
            self._insert_dead(dead_letters)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return inserted

    def write_records(self, events: Sequence[Event], records: Sequence[SourceRecord],
                      dead_letters: Sequence[DeadLetter], spans: Mapping[tuple[str, int], Span]
                      ) -> WriteOutcome:
        """One consumed batch in one transaction: events, duplicates, dead letters, positions.

        ``records[i]`` is the Kafka record ``events[i]`` was decoded from; ``spans`` gives, per
        ``(topic, partition)`` in the batch, its lowest offset and the offset after its highest
        (over all its records, valid or not). See the module docstring for what counts as a
        duplicate.
        """
        if len(events) != len(records):
            raise ValueError(f"{len(events)} events but {len(records)} source records")
        seen = self._next_offset
        table = events_to_arrow(events)
        ids: list[int] = table.column("event_id").to_pylist()
        redelivered = any(first < seen.get(tp, 0) for tp, (first, _next) in spans.items())
        duplicates: list[Duplicate] = []
        if not redelivered and len(set(ids)) == len(ids):
            # The usual batch, read for the first time, no id twice: every record is a candidate.
            fresh: list[int] = list(range(len(events)))
        else:
            fresh, keep, first_seen = [], [], set()
            for i, (eid, rec) in enumerate(zip(ids, records, strict=True)):
                is_fresh = rec.offset >= seen.get((rec.topic, rec.partition), 0)
                if eid in first_seen:  # repeated within this batch: the first one is stored
                    if is_fresh:
                        duplicates.append(_duplicate(events[i], rec))
                    continue
                first_seen.add(eid)
                keep.append(i)
                if is_fresh:
                    fresh.append(i)
            if len(keep) < len(ids):
                table = table.take(keep)
        self.conn.execute("BEGIN TRANSACTION")
        try:
            inserted = self._insert_returning(table)
            if len(inserted) < len(fresh):  # some first-time records were not inserted
                stored = set(inserted)
                duplicates.extend(_duplicate(events[i], records[i]) for i in fresh if ids[i] not in stored)
            if duplicates:
                self.conn.register("incoming_dup", pa.table(
                    {"source": [d.source for d in duplicates],
                     "event_id": [d.event_id for d in duplicates],
                     "key": [d.key for d in duplicates], "payload": [d.payload for d in duplicates]},
                    schema=_DUP_SCHEMA))
                self.conn.execute("INSERT INTO duplicate_events (source, event_id, key, payload) "
                                  "SELECT * FROM incoming_dup ON CONFLICT DO NOTHING")
                self.conn.unregister("incoming_dup")
            self._insert_dead(dead_letters)
            advanced = {tp: nxt for tp, (_first, nxt) in spans.items() if nxt > seen.get(tp, 0)}
            if advanced:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO source_positions VALUES (?, ?, ?)",
                    [(t, p, n) for (t, p), n in advanced.items()])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        seen.update(advanced)
        return WriteOutcome(inserted=len(inserted), duplicates=duplicates)

    def _insert_returning(self, table: pa.Table) -> list[int]:
        """Insert ``table`` (distinct ids); return the ids actually inserted."""
        if not table.num_rows:
            return []
        self.conn.register("incoming", table)
        # RETURNING lists only the rows inserted, not those skipped as conflicts.
        ids = self.conn.execute("INSERT INTO events SELECT * FROM incoming ON CONFLICT DO NOTHING "
                                "RETURNING event_id").fetchnumpy()["event_id"]
        self.conn.unregister("incoming")
        return list(ids.tolist())

    def _insert_dead(self, dead_letters: Sequence[DeadLetter]) -> None:
        if not dead_letters:
            return
        # One Arrow insert: executemany runs a statement per row (~3 ms each here).
        self.conn.register("incoming_dead", pa.table(
            {name: [getattr(d, name) for d in dead_letters] for name in _DEAD_COLUMNS},
            schema=_DEAD_SCHEMA))
        self.conn.execute(
            f"INSERT INTO dead_letters ({', '.join(_DEAD_COLUMNS)}) "
            "SELECT * FROM incoming_dead ON CONFLICT DO NOTHING")
        self.conn.unregister("incoming_dead")

    def count(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0

    def count_dead(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        return int(row[0]) if row else 0

    def count_duplicates(self) -> int:
        """Valid records not stored because their event_id already was (see the module docstring)."""
        row = self.conn.execute("SELECT count(*) FROM duplicate_events").fetchone()
        return int(row[0]) if row else 0

    def duplicates(self) -> list[Duplicate]:
        rows = self.conn.execute(
            "SELECT source, event_id, key, payload FROM duplicate_events ORDER BY source").fetchall()
        return [Duplicate(str(s), int(e), k, p) for s, e, k, p in rows]

    def figures(self) -> StoreFigures:
        """Events, dead letters and duplicates; a table missing from this file gives ``None``."""
        tables = {str(r[0]) for r in self.conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}

        def count(table: str) -> int | None:
            if table not in tables:
                return None
            row = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else 0

        return StoreFigures(events=count("events"), dead_letters=count("dead_letters"),
                            duplicates=count("duplicate_events"))

    def duplicate_ids(self) -> int:
        """Rows beyond the first per event_id (0 unless the primary key were dropped)."""
        row = self.conn.execute(
            "SELECT count(*) - count(DISTINCT event_id) FROM events").fetchone()
        return int(row[0]) if row else 0

    def event_ids(self) -> set[int]:
        return {int(r[0]) for r in self.conn.execute("SELECT event_id FROM events").fetchall()}

    def dead_letter_reasons(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT field, count(*) FROM dead_letters GROUP BY field ORDER BY 2 DESC").fetchall()
        return {str(f): int(n) for f, n in rows}

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duplicate(event: Event, rec: SourceRecord) -> Duplicate:
    return Duplicate(source_id(rec.topic, rec.partition, rec.offset), event.event_id, rec.key, rec.value)


def read_figures(path: Path | str) -> StoreFigures:
    """The figures of the store at ``path``, opened read-only.

    DuckDB lets no other process open a file, not even read-only, while one process has it
    open for writing: that case raises :class:`StoreBusyError`, saying who holds it.
    """
    with EventStore(path, read_only=True) as store:
        return store.figures()
