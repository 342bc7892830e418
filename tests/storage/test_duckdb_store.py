"""Idempotent writes: a redelivered batch adds nothing; dead letters too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.schema import Event, duckdb_ddl
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.storage.duckdb_store import (
    DeadLetter,
    EventStore,
    StoreBusyError,
    StoreFigures,
    read_figures,
)


def _events(n: int, seed: int) -> list[Event]:
    return [Event(**e) for e in generate_events(GeneratorConfig(events=n, seed=seed))]  # type: ignore[arg-type]


def test_redelivery_does_not_duplicate(seed: int) -> None:
    events = _events(500, seed)
    dead = [DeadLetter("kafka:t:0:7", "kafka", b"k", b"\xff", "<record>", "Invalid JSON")]
    with EventStore(":memory:") as store:
        assert store.write(events[:300], dead) == 300
        assert store.write(events[200:], dead) == 200  # 100 overlap, redelivered
        assert store.count() == 500
        assert store.duplicate_ids() == 0
        assert store.count_dead() == 1
        assert store.event_ids() == {e.event_id for e in events}


def test_failed_write_leaves_nothing(seed: int) -> None:
    events = _events(10, seed)
    bad = [DeadLetter("x", "kafka", None, b"", "f", "r"), DeadLetter("y", "kafka", None, b"", "f", "r")]
    with EventStore(":memory:") as store:
        # A dead letter violating NOT NULL makes the whole transaction fail.
        bad.append(DeadLetter("z", "kafka", None, b"", None, "r"))  # type: ignore[arg-type]
        with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
            store.write(events, bad)
        assert store.count() == 0 and store.count_dead() == 0


def test_second_writer_process_gets_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "x.duckdb"
    holder = subprocess.Popen([sys.executable, "-c",
                               f"import duckdb,time; c=duckdb.connect({str(db)!r}); print('ok', flush=True); "
                               "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(PlaygroundError, match="one writing process"):
            EventStore(db)
    finally:
        holder.kill()
        holder.wait()


@dataclass(frozen=True)
class _Rec:
    """A stand-in for kafka-python's ConsumerRecord (the store reads only these fields)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def _consumed(events: list[Event], topic: str = "t", partition: int = 0, first_offset: int = 0
              ) -> tuple[list[Event], list[_Rec], dict[tuple[str, int], tuple[int, int]]]:
    """The events as read from one partition from ``first_offset`` on, and the batch's span."""
    recs = [_Rec(topic, partition, first_offset + i, str(e.user_id).encode(), e.model_dump_json().encode())
            for i, e in enumerate(events)]
    return events, recs, {(topic, partition): (first_offset, first_offset + len(events))}


def test_reused_event_id_is_a_duplicate_kept_aside(tmp_path: Path, seed: int) -> None:
    events = _events(50, seed)
    reused = events[7].model_copy(update={"amount": events[7].amount + 1.0})
    db = tmp_path / "dups.duckdb"
    with EventStore(db) as store:
        first, first_recs, first_ends = _consumed(events[:30])
        out = store.write_records(first, first_recs, [], first_ends)
        assert (out.inserted, out.duplicates) == (30, [])
        # The next batch reuses event 7's id with another amount, and repeats event 40 in itself.
        batch = [*events[30:41], reused, events[40]]
        evs, recs, ends = _consumed(batch, first_offset=30)
        out = store.write_records(evs, recs, [], ends)
        assert out.inserted == 11
        assert sorted(d.source for d in out.duplicates) == ["kafka:t:0:41", "kafka:t:0:42"]
        assert store.count() == 41 and store.count_duplicates() == 2
        kept = {d.event_id: d for d in store.duplicates()}
        assert kept[reused.event_id].payload == recs[11].value  # the refused record, whole
        stored_amount = store.conn.execute("SELECT amount FROM events WHERE event_id = ?",
                                           [reused.event_id]).fetchone()
        assert stored_amount == (events[7].amount,)  # the first record wins

    # Reopened (a restarted sink): the same batch again is a redelivery, not more duplicates.
    with EventStore(db) as store:
        out = store.write_records(evs, recs, [], ends)
        assert (out.inserted, out.duplicates) == (0, [])
        assert store.count_duplicates() == 2
        # A new record alone (no repeat within its batch) reusing a stored id.
        out = store.write_records(*_consumed([events[0]], first_offset=43)[:2], [],
                                  _consumed([events[0]], first_offset=43)[2])
        assert (out.inserted, [d.source for d in out.duplicates]) == (0, ["kafka:t:0:43"])
        assert store.figures() == StoreFigures(events=41, dead_letters=0, duplicates=3)


def test_redelivered_batch_across_partitions_counts_nothing(seed: int) -> None:
    events = _events(20, seed)
    with EventStore(":memory:") as store:
        a = _consumed(events[:10], partition=0)
        b = _consumed(events[10:], partition=1)
        store.write_records([*a[0], *b[0]], [*a[1], *b[1]], [], {**a[2], **b[2]})
        # Partition 1 is redelivered from offset 5 together with new records on partition 0.
        new = _consumed([events[3].model_copy(update={"amount": 1.0})], partition=0, first_offset=10)
        out = store.write_records([*b[0][5:], *new[0]], [*b[1][5:], *new[1]], [],
                                  {("t", 1): (5, 10), **new[2]})
        assert out.inserted == 0
        assert [d.source for d in out.duplicates] == ["kafka:t:0:10"]


def test_mismatched_records_are_refused(seed: int) -> None:
    events = _events(3, seed)
    with EventStore(":memory:") as store, pytest.raises(ValueError, match="3 events but 2"):
        store.write_records(events, _consumed(events)[1][:2], [], {})


def test_figures_read_only_old_file_and_busy_file(tmp_path: Path) -> None:
    old = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(old))
    conn.execute(duckdb_ddl("events"))  # a store from before duplicates were kept
    conn.close()
    assert read_figures(old) == StoreFigures(events=0, dead_letters=None, duplicates=None)

    import subprocess
    import sys

    hold = f"import duckdb,time; c=duckdb.connect({str(old)!r}); print('ok', flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreBusyError, match=r"open for writing by another process.*PID"):
            read_figures(old)
    finally:
        holder.kill()
        holder.wait()
