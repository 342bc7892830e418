"""Idempotent writes: a redelivered batch adds nothing; dead letters too."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.schema import Event
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.storage.duckdb_store import DeadLetter, EventStore


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
