"""The DuckDB segment hand-off, in one process: sealed segments only, validated, resumable."""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataflow_playground.consumers.from_db import DuckDBSegmentReader
from dataflow_playground.core import receipts
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.producers.to_db import DuckDBSegmentWriter, sealed_segments


def _events(n: int, seed: int) -> list[dict]:
    return generate_events(GeneratorConfig(events=n, seed=seed))


def test_reader_sees_only_sealed_segments(tmp_path: Path, seed: int) -> None:
    seg, rc = tmp_path / "seg", tmp_path / "rc"
    writer = DuckDBSegmentWriter(seg, roll_ms=10_000)  # never rolls on its own
    reader = DuckDBSegmentReader(seg, rc)
    writer.send(_events(100, seed))
    assert reader.poll_once() == 0  # still open: invisible, and no lock taken
    writer.close()
    assert reader.poll_once() == 100
    assert reader.poll_once() == 0  # nothing read twice
    assert receipts.count(rc) == 100


def test_open_segment_is_never_opened_by_the_reader_while_written(tmp_path: Path, seed: int) -> None:
    seg = tmp_path / "seg"
    writer = DuckDBSegmentWriter(seg, roll_ms=0)  # seals after every batch
    reader = DuckDBSegmentReader(seg, tmp_path / "rc")
    events = _events(1000, seed)
    for i in range(0, 1000, 100):
        writer.send(events[i:i + 100])
        reader.poll_once()  # between writes, like the real reader: never a lock error
    writer.close()
    reader.poll_once()
    assert len(sealed_segments(seg)) == 10
    got = receipts.read(receipts.receipt_files(tmp_path / "rc"))
    assert sorted(got["event_id"].tolist()) == list(range(1000))


def test_bad_records_become_dead_letters_with_the_field(tmp_path: Path, seed: int) -> None:
    seg = tmp_path / "seg"
    events = _events(5, seed)
    events[1] = {**events[1], "amount": -3.0}
    events[3] = {k: v for k, v in events[3].items() if k != "currency"}
    writer = DuckDBSegmentWriter(seg)
    writer.send(events)
    writer.close()
    assert (writer.stats.accepted, writer.stats.rejected) == (3, 2)
    conn = duckdb.connect(str(sealed_segments(seg)[0]), read_only=True)
    assert sorted(r[0] for r in conn.execute("SELECT field FROM dead_letters").fetchall()) == [
        "amount", "currency"]
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
    conn.close()


def test_restarted_reader_skips_what_it_already_read(tmp_path: Path, seed: int) -> None:
    seg, rc = tmp_path / "seg", tmp_path / "rc"
    writer = DuckDBSegmentWriter(seg, roll_ms=0)
    events = _events(300, seed)
    writer.send(events[:100])
    DuckDBSegmentReader(seg, rc).poll_once()
    writer.send(events[100:300])
    writer.close()
    DuckDBSegmentReader(seg, rc).poll_once()  # a fresh process: resumes from its receipt files
    got = receipts.read(receipts.receipt_files(rc))
    assert len(got) == 300 and len(set(got["event_id"].tolist())) == 300


def test_a_new_writer_continues_the_numbering(tmp_path: Path, seed: int) -> None:
    seg = tmp_path / "seg"
    w1 = DuckDBSegmentWriter(seg)
    w1.send(_events(10, seed))
    w1.close()
    w2 = DuckDBSegmentWriter(seg)
    w2.send(_events(10, seed + 1))
    w2.close()
    assert [p.name for p in sealed_segments(seg)] == ["seg-00000000.duckdb", "seg-00000001.duckdb"]
