"""The runner every stream engine shares, fed from memory (:mod:`...stream.testing`): batch
decoding, polls of uneven size, dead letters, and values equal to batch SQL.

Seeded data (seed printed in each test's parameters) so a failure can be replayed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow_playground.core.dead_letters import FEATURES_STAGE, DeadLetterInfo
from dataflow_playground.core.schema import Event
from dataflow_playground.core.validation import Rejection, decode_batch, decode_event
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.stream.testing import (
    INPUT,
    SHUFFLE_TOPIC,
    MemorySink,
    MemorySource,
    assign_all,
    memory_runner,
    run_in_memory,
)
from dataflow_playground.producers.generator import (
    MALFORMED_KINDS,
    GeneratorConfig,
    generate_table,
    wire_records,
)
from tests.helpers import assert_stream_equals_batch

PARTITIONS = 3



def _outcome(x: Event | Rejection) -> object:
    return ("rejected", x.field) if isinstance(x, Rejection) else x


def test_decode_batch_matches_one_by_one() -> None:
    cfg = GeneratorConfig(events=400, seed=21, malformed_rate=0.3)
    values = [r.value for r in wire_records(cfg)]
    kinds = {r.malformed for r in wire_records(cfg)}
    assert kinds >= set(MALFORMED_KINDS)  # every breakage is in the mix
    good = [v for v, r in zip(values, wire_records(cfg), strict=True) if r.malformed is None]
    assert decode_batch(good) == [decode_event(v) for v in good]  # the fast path
    # The fallback (a Rejection's message may quote the clock, so compare its field).
    assert [_outcome(x) for x in decode_batch(values)] == [_outcome(decode_event(v)) for v in values]
    # One record holding two events must not pass as two.
    pair = good[0] + b"," + good[1]
    out = decode_batch([pair, good[2]])
    assert out[1] == decode_event(good[2]) and out[0] == decode_event(pair)
    assert not hasattr(out[0], "event_id")


@pytest.mark.parametrize("seed", [31, 32])
def test_polls_equal_batch_and_dead_letters(tmp_path: Path, seed: int) -> None:
    cfg = GeneratorConfig(events=3000, seed=seed, rate=2.0, malformed_rate=0.05)
    malformed = sum(r.malformed is not None for r in wire_records(cfg))
    source = MemorySource.from_wire(((r.key, r.value) for r in wire_records(cfg)), PARTITIONS)
    runner, sink = run_in_memory(source, tmp_path / "online.sqlite")

    dead_lettered = sum(c["dead_lettered"] for c in runner.counters().values())
    assert dead_lettered == len(sink.dead) == malformed > 0
    infos = [DeadLetterInfo.from_headers(h) for _k, _v, h in sink.dead]
    assert all(i.reason and i.stage == FEATURES_STAGE and i.source.startswith("kafka:in:") for i in infos)
    good = {r.event_id for r in wire_records(cfg) if r.event_id is not None}
    table = generate_table(cfg)
    table = table.filter([eid in good for eid in table.column("event_id").to_pylist()])
    batch = BatchFeatures(table)
    training = batch.training_table().to_pylist()
    assert len(sink.values) == len(training)
    assert_stream_equals_batch(batch, sink.values, tmp_path / "online.sqlite")


def test_memory_source_keeps_per_key_order_and_interleaves() -> None:
    wire = [(str(u).encode(), f"v{i}".encode()) for i, u in enumerate([1, 2, 1, 3, 1, 2, 4, 1])]
    source = MemorySource.from_wire(wire, 3)
    assert [r[2] for r in source.partitions[1]] == [b"1", b"1", b"1", b"4", b"1"]
    assert [r[1] for r in source.partitions[1]] == [0, 1, 2, 3, 4]  # offsets per partition
    polls = list(source.polls())
    assert [len(poll) for poll in polls] == [3, 3]  # each poll has a slice of every partition
    assert [len(part) for part in polls[0]] == [1, 1, 1]
    flat = [r for poll in polls for part in poll for r in part]
    assert sorted(flat, key=lambda r: (r[0], r[1])) == sorted(
        [r for recs in source.partitions.values() for r in recs], key=lambda r: (r[0], r[1]))


def test_a_replay_publishes_only_dead_letters_not_yet_published(tmp_path: Path) -> None:
    """A recovering task re-reads its input: a bad record already dead-lettered is not sent again."""
    cfg = GeneratorConfig(events=600, seed=33, malformed_rate=0.1)
    source = MemorySource.from_wire(((r.key, r.value) for r in wire_records(cfg)), PARTITIONS)
    _, first = run_in_memory(source, tmp_path / "first.sqlite")
    sources = sorted(DeadLetterInfo.from_headers(h).source for _k, _v, h in first.dead)
    assert len(set(sources)) == len(sources) > 10
    # The first run died before its last dead letter reached the topic: the restart sends that one.
    # The topic is read when tasks are given (even the worker's first ones: they may be a dead
    # worker's, whose dead letters came out after this worker started).
    sink = MemorySink()
    runner = memory_runner(tmp_path / "second.sqlite", sink, PARTITIONS)
    runner.refresh_dead = lambda: set(sources[:-1])
    assign_all(runner, PARTITIONS)
    for poll in source.polls():
        runner.step([(INPUT, recs) for recs in poll])
    assert [DeadLetterInfo.from_headers(h).source for _k, _v, h in sink.dead] == sources[-1:]
    counters = runner.counters().values()
    assert sum(c["dead_lettered"] for c in counters) == len(sources)
    assert sum(c["dead_letters_known"] for c in counters) == len(sources) - 1
    runner.store.close()


def test_a_deferred_assignment_restores_later_and_keeps_only_what_is_still_owned(tmp_path: Path) -> None:
    """Engines note partitions in the group callback (``defer``) and restore them afterwards;
    a partition taken away again meanwhile is dropped, not kept with stale state."""
    runner = memory_runner(tmp_path / "online.sqlite", MemorySink(), PARTITIONS)
    given = [(INPUT, 0), (INPUT, 1), (SHUFFLE_TOPIC, 0)]
    assert runner.assign(given, defer=True) == {}
    assert runner.tasks == {} and runner.awaiting == given
    assert runner.assign(given, defer=True) == {}  # told twice: noted once
    restored = runner.finish_assign()
    assert sorted(restored) == sorted(given) and runner.awaiting == []
    kept = runner.keep_owned(restored, [(INPUT, 1), (SHUFFLE_TOPIC, 0), (INPUT, 2)])
    assert kept == {(INPUT, 1): 0, (SHUFFLE_TOPIC, 0): 0}
    assert sorted(runner.tasks) == sorted(kept)  # (INPUT, 2) was never given: not created either
    runner.store.close()
