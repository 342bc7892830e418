"""The online store: one SQLite file in WAL mode, written by every stream worker, read by REST.

Why SQLite WAL with several writers: the REST service runs in another process and must
read while workers write. WAL gives readers a consistent snapshot without blocking
writers; writers take turns on SQLite's write lock (a commit is a few ms and each worker
commits once per poll, so with a handful of workers on one machine they rarely wait, and
``busy_timeout`` covers it). The file is the whole interface, so the REST service needs
no Kafka client and sees every partition. Each entity id belongs to one task at a time,
so writers never fight over a row; the one race left (a worker that lost a partition still
writing its last batch) is made harmless by the upsert, which never replaces a vector with
an older one (``as_of`` only moves forward). Workers on several machines would need a
networked store (e.g. Redis or Postgres) behind the same two classes.

Tables: ``online_features`` (latest vector per entity id, with event-time ``as_of``
and wall-clock ``updated_ms`` for freshness), ``task_stats`` (each task's counters,
written by whoever owns the task), ``worker_stats`` (each worker's heartbeat and
checkpoint figures) and, when asked, ``freshness`` (per event and stage: produced -> visible).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings

HEARTBEAT_MAX_AGE_MS = 5_000
SCHEMA_VERSION = 2
# Task counters that combine across tasks by their maximum; the others add up.
_MAX_COUNTERS = frozenset({"max_lateness_ms", "frontier_ts", "allowed_lateness_ms"})

_DDL = """
CREATE TABLE IF NOT EXISTS online_features (
    entity TEXT NOT NULL, id INTEGER NOT NULL, as_of INTEGER NOT NULL,
    vals TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (entity, id));
CREATE TABLE IF NOT EXISTS task_stats (task TEXT NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (task, name));
CREATE TABLE IF NOT EXISTS worker_stats (worker TEXT NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (worker, name));
CREATE TABLE IF NOT EXISTS freshness (event_id INTEGER NOT NULL, stage TEXT NOT NULL,
    produced_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL);
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


def _locked(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def online_store_path(settings: Settings) -> Path:
    return settings.data_dir / "features_online.sqlite"


def worker_healthy(settings: Settings, worker_id: str | None = None) -> bool:
    """A features worker (``worker_id``, or any) wrote its heartbeat within the last few seconds."""
    path = online_store_path(settings)
    if not path.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT max(value) FROM worker_stats WHERE name = 'heartbeat_ms' "
                              "AND (? IS NULL OR worker = ?)", (worker_id, worker_id)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return row is not None and row[0] is not None and now_ms() - row[0] < HEARTBEAT_MAX_AGE_MS


class OnlineStoreWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        # Several workers may open a new file at once. Switching it to WAL takes a lock that
        # ``timeout`` (busy_timeout) does not wait for: "database is locked" at once, seen when
        # two workers started together. Retried, as the lock is held for milliseconds.
        for attempt in Retrying(retry=retry_if_exception(_locked), stop=stop_after_delay(30),
                                wait=wait_random(0.01, 0.2), reraise=True):
            with attempt:
                self._init_schema()

    def _init_schema(self) -> None:
        self.con.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is durable against a process crash, not a power cut; fine for a cache
        # that is rebuilt from Kafka.
        self.con.execute("PRAGMA synchronous=NORMAL")
        if self.con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            # A file from before per-task counters: its vectors are rebuilt from Kafka anyway.
            self.con.executescript("DROP TABLE IF EXISTS stream_stats; DROP TABLE IF EXISTS freshness; "
                                   "DROP TABLE IF EXISTS online_features;")
            self.con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.con.executescript(_DDL)

    def reset(self) -> None:
        self.con.executescript("DELETE FROM online_features; DELETE FROM task_stats; "
                               "DELETE FROM worker_stats; DELETE FROM freshness;")

    def write(self, rows: Iterable[tuple[str, int, int, dict[str, object]]],
              tasks: dict[str, dict[str, int]] | None = None, worker: dict[str, int] | None = None,
              worker_id: str = "worker", freshness: list[tuple[int, str, int]] | None = None) -> int:
        """Upsert vectors and counters in one transaction; return the commit's wall time (ms).

        ``freshness``: ``(event_id, stage, produced_ms)`` of events whose values this commit
        makes visible.
        """
        ts = now_ms()
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            "INSERT INTO online_features VALUES (?, ?, ?, ?, ?) ON CONFLICT (entity, id) DO UPDATE "
            "SET as_of = excluded.as_of, vals = excluded.vals, updated_ms = excluded.updated_ms "
            "WHERE excluded.as_of >= online_features.as_of",
            [(e, i, a, orjson.dumps(v), ts) for e, i, a, v in rows])
        con.executemany("INSERT OR REPLACE INTO task_stats VALUES (?, ?, ?)",
                        [(task, k, v) for task, counters in (tasks or {}).items()
                         for k, v in counters.items()])
        con.executemany("INSERT OR REPLACE INTO worker_stats VALUES (?, ?, ?)",
                        [(worker_id, k, v) for k, v in (*(worker or {}).items(), ("heartbeat_ms", ts))])
        con.execute("COMMIT")
        if freshness:
            done = now_ms()  # visible to readers from the commit on
            # One transaction: in autocommit mode every row would be a commit of its own.
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO freshness VALUES (?, ?, ?, ?)",
                            [(eid, stage, produced, done) for eid, stage, produced in freshness])
            con.execute("COMMIT")
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

    def task_stats(self) -> dict[str, dict[str, int]]:
        """Each task's counters (``user-0``, ``merchant-2``, ...), as its latest owner wrote them."""
        return self._grouped("SELECT task, name, value FROM task_stats")

    def worker_stats(self) -> dict[str, dict[str, int]]:
        """Each worker's row: heartbeat, PID, assigned partitions, checkpoint figures."""
        return self._grouped("SELECT worker, name, value FROM worker_stats")

    def _grouped(self, sql: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        try:
            for owner, name, value in self.con.execute(sql):
                out.setdefault(owner, {})[name] = value
        except sqlite3.OperationalError:  # a store from before these tables: nothing to show
            pass
        return out

    def stats(self) -> dict[str, int]:
        """All tasks' counters combined: user-stage ones by their names, merchant-stage ones
        prefixed ``merchant_``; plus ``heartbeat_ms`` (newest worker) and ``assigned_partitions``
        and ``workers`` (of the workers alive, heartbeat within the last few seconds)."""
        out: dict[str, int] = {}
        for task, counters in self.task_stats().items():
            prefix = "" if task.startswith("user-") else "merchant_"
            for name, value in counters.items():
                key = prefix + name
                if name in _MAX_COUNTERS:
                    out[key] = max(out.get(key, value), value)
                else:
                    out[key] = out.get(key, 0) + value
        out["buffered"] = out.get("merchant_buffered", 0) + out.get("buffered", 0)
        workers = self.worker_stats()
        beats = [w.get("heartbeat_ms", 0) for w in workers.values()]
        if beats:
            out["heartbeat_ms"] = max(beats)
        alive = [w for w in workers.values() if now_ms() - w.get("heartbeat_ms", 0) < HEARTBEAT_MAX_AGE_MS]
        out["workers"] = len(alive)
        out["assigned_partitions"] = sum(w.get("assigned_partitions", 0) for w in alive)
        return out

    def freshness(self) -> list[tuple[int, str, int, int]]:
        """``(event_id, stage, produced_ms, visible_ms)`` rows."""
        return self.con.execute("SELECT event_id, stage, produced_ms, visible_ms FROM freshness").fetchall()

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
