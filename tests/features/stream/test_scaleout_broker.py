"""Stream workers scaled out against the real broker: SIGKILL, restart after a checkpoint, a
worker added mid-stream, poison records. Workers are real processes (:class:`WorkerGroup`).

Every test ends with the same two checks against DuckDB batch SQL over the same events:
every event's values (user and merchant stages, deduplicated by event id) and the final
online state, 0 mismatches.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.dead_letters import FEATURES_STAGE, DeadLetterInfo
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.online_store import OnlineStoreReader
from dataflow_playground.features.stream.checkpoint import CheckpointStore
from dataflow_playground.features.stream.process import WorkerGroup
from dataflow_playground.features.stream.runner import dedupe_feature_records
from dataflow_playground.features.stream.worker import internal_topics
from dataflow_playground.producers.generator import GeneratorConfig, WireRecord, generate_table, wire_records
from dataflow_playground.producers.to_kafka import make_producer, produce
from tests.helpers import assert_stream_equals_batch

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class Run:
    """Topics, a worker group and the events of one test."""

    def __init__(self, settings: Settings, tmp: Path, engine: str, cfg: GeneratorConfig,
                 checkpoint_interval_s: float = 1.0) -> None:
        rid = uuid.uuid4().hex[:8]
        self.settings, self.cfg = settings, cfg
        self.bootstrap = settings.bootstrap_servers
        self.topic, self.out, self.dlq, self.app_id = (f"so-{rid}", f"so-{rid}.features",
                                                       f"so-{rid}.dlq", f"so-{rid}")
        kafka_admin.ensure_topics(self.bootstrap, [kafka_admin.TopicSpec(self.topic, settings.partitions)])
        self.group = WorkerGroup(settings, self.topic, self.out, self.dlq, tmp / "online.sqlite",
                                 self.app_id, engine=engine, checkpoint_interval_s=checkpoint_interval_s)
        self.records: list[WireRecord] = list(wire_records(cfg))
        self.sent = 0

    def produce(self, records: list[WireRecord]) -> None:
        producer = make_producer(self.bootstrap)
        self.sent += produce(producer, self.topic, ((r.key, r.value) for r in records)).sent
        producer.close()

    def ends(self, topic: str) -> dict[int, int]:
        return kafka_admin.end_offsets(self.bootstrap, topic)

    def task_stats(self) -> dict[str, dict[str, int]]:
        reader = OnlineStoreReader(self.group.store)
        try:
            return reader.task_stats()
        finally:
            reader.close()

    def wait_checkpointed(self, timeout_s: float = 30) -> dict[str, int]:
        """Until every user task's checkpoint covers its whole input; return the positions."""
        store = CheckpointStore(self.bootstrap, self.app_id, client_id="test-reader")
        try:
            ends = self.ends(self.topic)
            deadline = time.monotonic() + timeout_s
            while True:
                positions = {t: m.position for t, m in store.manifests().items()}
                if all(positions.get(f"user-{p}", -1) >= end for p, end in ends.items()):
                    return positions
                assert time.monotonic() < deadline, (positions, ends)
                time.sleep(0.3)
        finally:
            store.close()

    def manifests(self) -> dict[str, int]:
        store = CheckpointStore(self.bootstrap, self.app_id, client_id="test-reader")
        try:
            return {t: m.position for t, m in store.manifests().items()}
        finally:
            store.close()

    def feature_records(self) -> list[bytes]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            tps = [TopicPartition(self.out, p) for p in self.ends(self.out)]
            ends = consumer.end_offsets(tps)
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[bytes] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                assert time.monotonic() < deadline
                for msgs in consumer.poll(timeout_ms=500).values():
                    out.extend(m.value for m in msgs)
            return out
        finally:
            consumer.close()

    def assert_equals_batch(self) -> dict[str, int]:
        """Every good event has both stages' values, equal to batch SQL; so does the final state.

        Stops the workers first: a clean stop flushes what their producers still hold.
        """
        self.group.stop()
        good = {r.event_id for r in self.records if r.event_id is not None}
        table = generate_table(self.cfg)
        batch = BatchFeatures(table.filter([e in good for e in table.column("event_id").to_pylist()]))
        raw = self.feature_records()
        values, repeats = dedupe_feature_records(raw)
        stages: dict[int, set[str]] = {}
        for v in raw:
            rec = orjson.loads(v)
            if rec["kind"] == "events":
                for ev in rec["events"]:
                    stages.setdefault(ev["event_id"], set()).add(rec["stage"])
        assert set(values) == good, f"{len(good - set(values))} events have no values"
        assert all(s == {"user", "merchant"} for s in stages.values())
        assert_stream_equals_batch(batch, values, self.group.store)
        return {"repeats": repeats}

    def close(self) -> None:
        self.group.stop()
        existing = set(kafka_admin.list_topics(self.bootstrap))
        kafka_admin.delete_topics(self.bootstrap, [t for t in [self.topic, self.out, self.dlq,
                                                               *internal_topics(self.app_id)]
                                                   if t in existing])


@pytest.fixture
def make_run(kafka_stack: Settings, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    runs: list[Run] = []

    def make(engine: str, events: int, seed: int, malformed_rate: float = 0.0,
             checkpoint_interval_s: float = 1.0) -> Run:
        run = Run(kafka_stack, tmp_path, engine, GeneratorConfig(events=events, seed=seed, rate=2.0,
                                                                 malformed_rate=malformed_rate),
                  checkpoint_interval_s)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


@pytest.mark.parametrize("engine", ["faust", "kafka-python"])
def test_two_workers_one_killed_mid_stream_equals_batch(make_run, engine: str) -> None:  # type: ignore[no-untyped-def]
    run = make_run(engine, events=6000, seed=61, malformed_rate=0.01)
    run.group.start(2)
    half = len(run.records) // 2
    run.produce(run.records[:half])
    run.group.wait_for(lambda st: st.get("consumed", 0) >= half // 2, 60, "get going")
    run.group.workers[0].kill()  # mid-stream: no final checkpoint, no goodbye to the group
    run.produce(run.records[half:])
    st = run.group.wait_drained(run.sent, timeout_s=120)
    assert run.group.workers[1].alive and not run.group.workers[0].alive
    assert st["dead_lettered"] == sum(r.malformed is not None for r in run.records) > 0
    run.group.wait_assigned(30, workers=1)  # the survivor owns every task (its own row says so)
    run.assert_equals_batch()
    # One dead letter per bad record: the survivor re-read some, and skipped the ones the killed
    # worker had published (it reads the dead-letter topic again when it takes tasks over).
    consumer = KafkaConsumer(run.dlq, bootstrap_servers=run.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10_000)
    sources = [DeadLetterInfo.from_headers(m.headers).source for m in consumer]
    consumer.close()
    assert len(sources) == len(set(sources)) == st["dead_lettered"]


@pytest.mark.parametrize("engine", ["faust", "kafka-python"])
def test_restart_after_a_checkpoint_rereads_only_what_came_after(make_run, engine: str) -> None:  # type: ignore[no-untyped-def]
    # Checkpoints only when a worker stops cleanly (the timer is an hour): what a killed worker
    # had read after its last checkpoint is then known exactly.
    run = make_run(engine, events=5000, seed=62, checkpoint_interval_s=3600)
    run.group.start(1)
    run.produce(run.records[:3000])
    run.group.wait_drained(run.sent, timeout_s=90)
    run.group.workers[0].stop()  # SIGTERM: a final checkpoint covering everything
    covered = run.wait_checkpointed()
    run.group.restart(0)
    # Nothing came after the checkpoint: the new process reads no input record again.
    stats = run.task_stats()
    for p in range(run.settings.partitions):
        assert stats[f"user-{p}"]["restored_position"] == covered[f"user-{p}"]
        assert stats[f"user-{p}"]["read_since_restore"] == 0
    # Now it dies (SIGKILL) with work done after that checkpoint; the restart re-reads that work.
    run.produce(run.records[3000:])
    run.group.wait_for(lambda st: st.get("consumed", 0) > 3500, 60, "read past the checkpoint")
    run.group.workers[0].kill()
    assert run.manifests() == covered  # no checkpoint since
    run.group.restart(0)
    run.group.wait_drained(run.sent, timeout_s=90)
    ends = run.ends(run.topic)
    stats = run.task_stats()
    for p, end in ends.items():
        task = stats[f"user-{p}"]
        assert task["restored_position"] == covered[f"user-{p}"]
        # Exactly what came after the checkpoint, never the whole partition.
        assert task["read_since_restore"] == end - covered[f"user-{p}"]
    reread = sum(stats[f"user-{p}"]["read_since_restore"] for p in ends)
    assert reread == len(run.records) - 3000
    for q, end in run.ends(run.app_id + "-repartition-merchant").items():
        task = stats[f"merchant-{q}"]
        assert task["restored_position"] == covered[f"merchant-{q}"]
        # (Its input may have grown since: user tasks send idle marks when the input goes quiet.)
        assert task["read_since_restore"] == task["position"] - covered[f"merchant-{q}"]
        assert task["position"] <= end
    run.assert_equals_batch()


@pytest.mark.parametrize("engine", ["faust", "kafka-python"])
def test_a_worker_added_mid_stream_processes_nothing_twice(make_run, engine: str) -> None:  # type: ignore[no-untyped-def]
    run = make_run(engine, events=6000, seed=63)
    run.group.start(1)
    third = len(run.records) // 3
    run.produce(run.records[:third])
    run.group.wait_for(lambda st: st.get("consumed", 0) >= third // 2, 60, "get going")
    run.group.add()  # a rebalance: tasks move to the new worker with their checkpoints
    run.produce(run.records[third:])
    run.group.wait_drained(run.sent, timeout_s=120)
    run.group.wait_assigned(30, workers=2)
    # A moved task resumes at its checkpoint: events after it are computed again by the new
    # owner (deduplicated downstream by event id), and the merchant side drops the repeated
    # repartition rows by source offset, so no event counts twice in any state.
    assert run.assert_equals_batch()["repeats"] >= 0
    owners = run.task_stats()
    assert sum(t["processed"] for name, t in owners.items() if name.startswith("user-")) == len(run.records)


def test_poison_records_go_to_the_dead_letter_topic_and_kill_no_worker(make_run) -> None:  # type: ignore[no-untyped-def]
    run = make_run("kafka-python", events=1500, seed=64, malformed_rate=0.02)
    run.group.start(1)
    producer = make_producer(run.bootstrap)
    shuffle = run.app_id + "-repartition-merchant"
    poison = [b"", b"not rows", b"\x01" * 59 * 3]  # empty, a ragged length, 3 rows of kind 1 from source 257
    for value in poison:
        producer.send(shuffle, value=value, partition=0).get(30)
    producer.close()
    run.produce(run.records)
    st = run.group.wait_drained(run.sent, timeout_s=90)
    assert run.group.workers[0].alive
    malformed = sum(r.malformed is not None for r in run.records)
    assert st["dead_lettered"] == malformed > 0
    assert st["merchant_dead_lettered"] == 2  # the empty record holds no row: nothing to refuse
    consumer = KafkaConsumer(run.dlq, bootstrap_servers=run.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10_000)
    infos = [DeadLetterInfo.from_headers(m.headers) for m in consumer]
    consumer.close()
    assert len(infos) == malformed + 2
    assert {i.stage for i in infos} == {FEATURES_STAGE}
    assert sum(i.source.startswith(f"kafka:{shuffle}:0:") for i in infos) == 2
    run.assert_equals_batch()
