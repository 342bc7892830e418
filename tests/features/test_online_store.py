"""The online store with several writers: workers that open a new file together all get in."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from dataflow_playground.features.online_store import OnlineStoreReader, OnlineStoreWriter

WRITERS = 8


def _open_and_write(path: str, start: multiprocessing.synchronize.Event, i: int) -> None:
    start.wait(10)
    writer = OnlineStoreWriter(Path(path))
    writer.write([("user", i, 1, {"n": i})], {f"user-{i}": {"consumed": i}}, {"pid": i}, f"w{i}")
    writer.close()


def test_writers_opening_a_new_file_together_all_get_in(tmp_path: Path) -> None:
    path = tmp_path / "online.sqlite"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_open_and_write, args=(str(path), start, i)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()  # all at once: one of them switches the new file to WAL while the others open it
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    reader = OnlineStoreReader(path)
    try:
        assert {i for (_e, i) in reader.all()} == set(range(WRITERS))
        assert set(reader.worker_stats()) == {f"w{i}" for i in range(WRITERS)}
    finally:
        reader.close()
