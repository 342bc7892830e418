"""Checkpoints and task moves, broker-free: the Kafka store's logic over lists (MemoryCheckpoints).

The broker tests (``test_scaleout_broker.py``) prove the same with real workers and SIGKILL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.parity import values_equal
from dataflow_playground.features.stream.runner import StreamRunner
from dataflow_playground.features.stream.tasks import Record
from dataflow_playground.features.stream.testing import (
    INPUT,
    SHUFFLE_TOPIC,
    MemoryCheckpoints,
    MemorySink,
    MemorySource,
    assign_all,
    feed_shuffle,
    memory_runner,
)
from dataflow_playground.features.stream.wire import pack_shuffle, unpack_shuffle
from dataflow_playground.producers.generator import GeneratorConfig, generate_table, wire_records
from tests.helpers import assert_stream_equals_batch

PARTS = 3


def _data(seed: int, events: int = 2400, malformed: float = 0.02) -> tuple[GeneratorConfig, MemorySource]:
    cfg = GeneratorConfig(events=events, seed=seed, rate=2.0, malformed_rate=malformed)
    return cfg, MemorySource.from_wire(((r.key, r.value) for r in wire_records(cfg)), PARTS)


def _batch(cfg: GeneratorConfig) -> BatchFeatures:
    good = {r.event_id for r in wire_records(cfg) if r.event_id is not None}
    table = generate_table(cfg)
    return BatchFeatures(table.filter([e in good for e in table.column("event_id").to_pylist()]))


def _assert_equals_batch(batch: BatchFeatures, values: dict[int, dict[str, object]], store: Path) -> None:
    assert len(values) == batch.training_table().num_rows
    assert_stream_equals_batch(batch, values, store)


def _feed(runner: StreamRunner, polls: list[list[list[Record]]], sink: MemorySink,
          read: dict[int, int]) -> None:
    for poll in polls:
        runner.step([(INPUT, [r for r in recs if (INPUT, r[0]) in runner.tasks]) for recs in poll])
        feed_shuffle(runner, sink, read)


def _tail(runner: StreamRunner, sink: MemorySink, read: dict[int, int]) -> None:
    runner.tick(now=time.monotonic() + 60)
    feed_shuffle(runner, sink, read)


def test_restore_rereads_only_what_came_after_the_checkpoint(tmp_path: Path) -> None:
    cfg, source = _data(41)
    polls = list(source.polls())
    half = len(polls) // 2
    sink, ckpt, read = MemorySink(), MemoryCheckpoints(), {}
    store = tmp_path / "online.sqlite"
    first = memory_runner(store, sink, PARTS, checkpoints=ckpt, worker_id="a")
    assign_all(first, PARTS)
    _feed(first, polls[:half], sink, read)
    first.checkpoint(list(first.tasks.values()))
    at_checkpoint = {tp: t.position for tp, t in first.tasks.items()}
    state_before = {tp: t.engine.online_state() for tp, t in first.tasks.items()}
    _feed(first, polls[half:half + 3], sink, read)  # work after the checkpoint, then a crash
    read_after = sum(t.read_since_restore for tp, t in first.tasks.items() if tp[0] == INPUT) - sum(
        v for tp, v in at_checkpoint.items() if tp[0] == INPUT)
    assert read_after > 0
    first.store.close()

    ckpt.forget_current()
    second = memory_runner(store, sink, PARTS, checkpoints=ckpt, worker_id="b")
    resume = assign_all(second, PARTS)
    assert resume == at_checkpoint  # each task resumes exactly at its checkpointed position
    for tp, task in second.tasks.items():
        restored = task.engine.online_state()
        assert restored.keys() == state_before[tp].keys()
        for key, vec in restored.items():
            assert all(values_equal(vec[n], state_before[tp][key][n]) for n in vec), key
    # A new owner reads from the checkpoint on: what it re-reads is exactly what came after.
    read = {q: second.tasks[(SHUFFLE_TOPIC, q)].position for q in range(PARTS)}
    _feed(second, list(source.polls(start={p: resume[(INPUT, p)] for p in range(PARTS)})), sink, read)
    _tail(second, sink, read)
    reread = sum(t.read_since_restore for tp, t in second.tasks.items() if tp[0] == INPUT)
    total = sum(len(r) for r in source.partitions.values())
    assert reread == total - sum(v for tp, v in at_checkpoint.items() if tp[0] == INPUT)
    second.store.close()
    _assert_equals_batch(_batch(cfg), sink.values, store)


def test_a_killed_worker_s_tasks_move_and_the_result_equals_batch(tmp_path: Path) -> None:
    """Two workers split the tasks; one dies between checkpoints; the other takes its tasks over."""
    cfg, source = _data(42)
    polls = list(source.polls())
    sink, ckpt, read = MemorySink(), MemoryCheckpoints(), {}
    store = tmp_path / "online.sqlite"
    a = memory_runner(store, sink, PARTS, checkpoints=ckpt, worker_id="a")
    b = memory_runner(store, sink, PARTS, checkpoints=ckpt, worker_id="b")
    a.assign([(INPUT, 0), (SHUFFLE_TOPIC, 0), (INPUT, 2)])
    b.assign([(INPUT, 1), (SHUFFLE_TOPIC, 1), (SHUFFLE_TOPIC, 2)])
    third = len(polls) // 3
    for i, poll in enumerate(polls[:2 * third]):
        for w in (a, b):
            _feed(w, [poll], sink, read)
        if i == third:
            a.checkpoint(list(a.tasks.values()))
            b.checkpoint(list(b.tasks.values()))
    # a dies (no checkpoint); b is given a's tasks and restores them from a's last checkpoint.
    a.store.close()
    gone = list(a.tasks)
    positions = b.assign(gone)
    assert all(positions[tp] <= a.tasks[tp].position for tp in gone)
    read_b = {q: b.tasks[(SHUFFLE_TOPIC, q)].position for q in range(PARTS)}
    start = {p: b.tasks[(INPUT, p)].position for p in range(PARTS)}
    # b's own input tasks continue from where they are, a's from their checkpoint.
    _feed(b, list(source.polls(start=start)), sink, read_b)
    _tail(b, sink, read_b)
    b.store.close()
    shuffled_twice = sum(t.counters.duplicates_skipped for tp, t in b.tasks.items() if tp[0] == SHUFFLE_TOPIC)
    assert shuffled_twice > 0  # a's user task re-sent rows the merchants had: dropped, not counted twice
    _assert_equals_batch(_batch(cfg), sink.values, store)


def test_after_a_quiet_spell_merchants_wait_for_every_partition_that_grew(tmp_path: Path) -> None:
    """Every user partition caught up and went idle; then new events come, and one partition's
    are read long before the others' (a rebalance, a slow worker). The merchants must not run
    ahead on the first one: the others have grown since their idle marks, so they hold."""
    cfg, source = _data(43, malformed=0.0)
    sink, read = MemorySink(), {}
    store = tmp_path / "online.sqlite"
    # What is in "Kafka": the first third the producer wrote (records carry their write order).
    cut = 1_000 + sum(len(r) for r in source.partitions.values()) // 3
    visible = {p: sum(r[4] < cut for r in recs) for p, recs in source.partitions.items()}
    first = dict(visible)
    runner = memory_runner(store, sink, PARTS)
    runner.input_ends = visible.copy
    assign_all(runner, PARTS)
    runner.step([(INPUT, recs[:visible[p]]) for p, recs in source.partitions.items()])
    feed_shuffle(runner, sink, read)
    _tail(runner, sink, read)  # caught up and quiet: idle marks, the merchants release everything
    merchants = [t for tp, t in runner.tasks.items() if tp[0] == SHUFFLE_TOPIC]
    assert sum(t.counters.emitted for t in merchants) == sum(visible.values())
    visible.update(source.ends())  # the producer writes the rest
    runner.step([(INPUT, source.partitions[0][first[0]:])])
    feed_shuffle(runner, sink, read)
    _tail(runner, sink, read)
    # Partition 0's events wait for partitions 1 and 2, whose idle marks no longer hold.
    assert sum(t.counters.emitted for t in merchants) == sum(first.values())
    runner.step([(INPUT, recs[first[p]:]) for p, recs in source.partitions.items() if p != 0])
    feed_shuffle(runner, sink, read)
    _tail(runner, sink, read)
    assert sum(t.orderer.stats.late_dropped + t.orderer.stats.late_accepted for t in merchants) == 0
    runner.store.close()
    _assert_equals_batch(_batch(cfg), sink.values, store)


def test_deltas_then_a_new_base_restore_the_same_state(tmp_path: Path) -> None:
    _cfg, source = _data(43, events=1500, malformed=0.0)
    sink, ckpt, read = MemorySink(), MemoryCheckpoints(), {}
    runner = memory_runner(tmp_path / "a.sqlite", sink, PARTS, checkpoints=ckpt)
    assign_all(runner, PARTS)
    for poll in source.polls():
        _feed(runner, [poll], sink, read)
        runner.checkpoint(list(runner.tasks.values()))  # many small deltas: forces new bases
    manifests = ckpt.manifests()
    assert max(m.epoch for m in manifests.values()) > 3
    live = {o for m in manifests.values() for o in (*m.base, *m.deltas, *m.pending)}
    assert all(ckpt.data[o][1] is not None for o in live)  # nothing named was dropped
    ckpt.forget_current()
    other = memory_runner(tmp_path / "b.sqlite", MemorySink(), PARTS, checkpoints=ckpt)
    assign_all(other, PARTS)
    for tp, task in runner.tasks.items():
        before, after = task.engine.online_state(), other.tasks[tp].engine.online_state()
        assert before.keys() == after.keys()
        assert all(values_equal(before[k][n], after[k][n]) for k in before for n in before[k])
    runner.store.close()
    other.store.close()


@pytest.mark.parametrize("poison", [b"", b"x" * 7, pack_shuffle([(9, 0, 0, 0, 0, 0, 0.0, 0, 0)]),
                                    pack_shuffle([(0, 77, 0, 0, 0, 0, 0.0, 0, 0)])])
def test_a_poison_repartition_record_is_dead_lettered(tmp_path: Path, poison: bytes) -> None:
    sink = MemorySink()
    runner = memory_runner(tmp_path / "a.sqlite", sink, PARTS)
    assign_all(runner, PARTS)
    runner.step([(SHUFFLE_TOPIC, [(0, 0, None, poison, 0)])])
    task = runner.tasks[(SHUFFLE_TOPIC, 0)]
    assert task.position == 1  # consumed, not retried forever
    if poison:
        assert len(sink.dead) == 1 and task.counters.dead_lettered == 1
    assert unpack_shuffle(b"") == []
    runner.store.close()


def test_a_large_step_is_sent_in_records_kafka_accepts(tmp_path: Path) -> None:
    """One poll releasing many events (a merchant catching up) must not become one huge record."""
    _cfg, source = _data(44, events=9000, malformed=0.0)
    sink = MemorySink()
    runner = memory_runner(tmp_path / "a.sqlite", sink, PARTS)
    assign_all(runner, PARTS)
    runner.step([(INPUT, recs) for recs in source.partitions.values()])  # everything in one poll
    read: dict[int, int] = {}
    _tail(runner, sink, read)
    assert len(sink.values) == 9000  # both stages, every event
    assert len(sink.features) > 2 * PARTS  # split, each under Kafka's limit (MemorySink checks)
    runner.store.close()


def test_background_checkpoints_restore_to_the_last_committed_one(tmp_path: Path) -> None:
    """Checkpoints written off the loop (the kafka-python engine's way): the loop goes on while
    one is written, a crash leaves the last committed one in force, and a new owner resumes
    from it with a result equal to batch."""
    cfg, source = _data(43)
    polls = list(source.polls())
    half = len(polls) // 2
    sink, ckpt, read = MemorySink(), MemoryCheckpoints(), {}
    store = tmp_path / "online.sqlite"
    first = memory_runner(store, sink, PARTS, checkpoints=ckpt, worker_id="a", checkpoint_interval_s=0,
                          background_checkpoints=True)
    assign_all(first, PARTS)
    started = 0
    for poll in polls[:half]:
        _feed(first, [poll], sink, read)
        started += first.maybe_checkpoint()
    first.checkpoint([])  # waits for the one being written: the crash comes after it
    assert started > 1 and first.stats.checkpoints > 1
    committed = {tp: t.checkpointed_position for tp, t in first.tasks.items()}
    assert all(pos >= 0 for pos in committed.values())
    _feed(first, polls[half:half + 3], sink, read)  # work after it, then the crash (no close)
    first.store.close()

    ckpt.forget_current()
    second = memory_runner(store, sink, PARTS, checkpoints=ckpt, worker_id="b")
    resume = assign_all(second, PARTS)
    assert resume == committed
    read = {q: second.tasks[(SHUFFLE_TOPIC, q)].position for q in range(PARTS)}
    _feed(second, list(source.polls(start={p: resume[(INPUT, p)] for p in range(PARTS)})), sink, read)
    _tail(second, sink, read)
    second.store.close()
    _assert_equals_batch(_batch(cfg), sink.values, store)


def test_a_failed_background_checkpoint_gives_its_entries_back(tmp_path: Path) -> None:
    _cfg, source = _data(44, events=600)
    sink, ckpt, read = MemorySink(), MemoryCheckpoints(), {}
    runner = memory_runner(tmp_path / "online.sqlite", sink, PARTS, checkpoints=ckpt, checkpoint_interval_s=0,
                           background_checkpoints=True)
    assign_all(runner, PARTS)
    _feed(runner, list(source.polls()), sink, read)
    pending = {tp: list(t.delta) for tp, t in runner.tasks.items()}
    assert any(pending.values())

    def broken(*_args: object, **_kw: object) -> None:
        raise OSError("broker gone")

    ckpt.save_many = broken  # type: ignore[method-assign]
    assert runner.maybe_checkpoint()
    with pytest.raises(OSError, match="broker gone"):
        runner.checkpoint(list(runner.tasks.values()))  # waits for the failed one: its error
    assert {tp: t.delta for tp, t in runner.tasks.items()} == pending  # nothing lost
    runner.store.close()
