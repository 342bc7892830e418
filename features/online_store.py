"""The online store: SQLite in WAL mode, one writer (the stream worker), many readers (REST).

Why SQLite WAL: the REST service runs in another process and must read while the
worker writes. WAL gives readers a consistent snapshot without blocking the writer
and survives either process restarting; the file is the whole interface, so the
REST service needs no Kafka client. (Consuming the ``features`` topic in the REST
process would also work, but every REST worker would then hold a full copy.)

Tables: ``online_features`` (latest vector per entity id, with event-time ``as_of``
and wall-clock ``updated_ms`` for freshness), ``stream_stats`` (counters and a
heartbeat) and, when asked, ``freshness`` (per event: produced -> visible).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings

HEARTBEAT_MAX_AGE_MS = 5_000

_DDL = """
CREATE TABLE IF NOT EXISTS online_features (
    entity TEXT NOT NULL, id INTEGER NOT NULL, as_of INTEGER NOT NULL,
    vals TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (entity, id));
CREATE TABLE IF NOT EXISTS stream_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS freshness (event_id INTEGER NOT NULL, produced_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL);
"""


class OnlineStoreError(PlaygroundError):
    """The online store file is missing or unreadable."""


@dataclass(frozen=True)
class OnlineRow:
    entity: str
    id: int
    as_of: int
    values: dict[str, object]
    updated_ms: int


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def online_store_path(settings: Settings) -> Path:
    return settings.data_dir / "features_online.sqlite"


def worker_healthy(settings: Settings) -> bool:
    """The features worker wrote its heartbeat within the last few seconds."""
    path = online_store_path(settings)
    if not path.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT value FROM stream_stats WHERE name = 'heartbeat_ms'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return row is not None and now_ms() - row[0] < HEARTBEAT_MAX_AGE_MS


class OnlineStoreWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is durable against a process crash, not a power cut; fine for a cache
        # that is rebuilt from Kafka.
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.executescript(_DDL)

    def reset(self) -> None:
        self.con.executescript(
            "DELETE FROM online_features; DELETE FROM stream_stats; DELETE FROM freshness;")

    def write(self, rows: Iterable[tuple[str, int, int, dict[str, object]]], stats: dict[str, int],
              freshness: list[tuple[int, int]] | None = None) -> int:
        """Upsert vectors and counters in one transaction; return the commit's wall time (ms)."""
        ts = now_ms()
        con = self.con
        con.execute("BEGIN")
        con.executemany(
            "INSERT INTO online_features VALUES (?, ?, ?, ?, ?) ON CONFLICT (entity, id) DO UPDATE "
            "SET as_of = excluded.as_of, vals = excluded.vals, updated_ms = excluded.updated_ms",
            [(e, i, a, orjson.dumps(v), ts) for e, i, a, v in rows])
        con.executemany("INSERT OR REPLACE INTO stream_stats VALUES (?, ?)",
                        [*stats.items(), ("heartbeat_ms", ts)])
        con.execute("COMMIT")
        if freshness:
            done = now_ms()  # visible to readers from the commit on
            con.executemany("INSERT INTO freshness VALUES (?, ?, ?)",
                            [(eid, produced, done) for eid, produced in freshness])
        return ts

    def close(self) -> None:
        self.con.close()


class OnlineStoreReader:
    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise OnlineStoreError(
                f"no online store at {path}: the features worker has not written yet. "
                "Start it with 'playground up' (or check 'playground status').")
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def get(self, entity: str, id_: int) -> OnlineRow | None:
        row = self.con.execute("SELECT as_of, vals, updated_ms FROM online_features WHERE entity=? AND id=?",
                               (entity, id_)).fetchone()
        if row is None:
            return None
        return OnlineRow(entity, id_, row[0], orjson.loads(row[1]), row[2])

    def all(self) -> dict[tuple[str, int], dict[str, object]]:
        return {(e, i): orjson.loads(v) for e, i, v in
                self.con.execute("SELECT entity, id, vals FROM online_features")}

    def stats(self) -> dict[str, int]:
        try:
            return dict(self.con.execute("SELECT name, value FROM stream_stats").fetchall())
        except sqlite3.OperationalError:
            return {}

    def freshness(self) -> list[tuple[int, int, int]]:
        return self.con.execute("SELECT event_id, produced_ms, visible_ms FROM freshness").fetchall()

    def close(self) -> None:
        self.con.close()


def event_time_frontier(settings: Settings) -> int:
    """The latest event time the stack's features worker has seen (0 before it wrote any).

    Events sent to its topic earlier than this minus its allowed lateness are dropped as late,
    so whoever adds events to a topic the worker already read stamps them after this.
    """
    path = online_store_path(settings)
    if not path.exists():
        return 0
    reader = OnlineStoreReader(path)
    try:
        return int(reader.stats().get("frontier_ts", 0))
    finally:
        reader.close()
