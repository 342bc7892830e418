"""Run batch and stream on the same events and measure parity (``playground features parity``).

The stream path is the real one: events are produced to a fresh Kafka topic, a worker
process of the chosen engine (:mod:`dataflow_playground.features.stream.faust_engine` or
:mod:`dataflow_playground.features.stream.kafka_python_engine`) consumes it, emits per-event values to
its own ``features`` topic and writes its online store. The batch path is DuckDB SQL
over the same clean events. Everything the run creates (topics, worker, and Kafka
itself if it was not running) is removed afterwards.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from kafka import KafkaConsumer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dataflow_playground.app import stack
from dataflow_playground.app.console import console
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import FEATURES
from dataflow_playground.features.online_store import OnlineStoreReader
from dataflow_playground.features.parity import FeatureParity, compare
from dataflow_playground.features.stream.process import WorkerProcess
from dataflow_playground.features.stream.registry import stream_engine
from dataflow_playground.features.stream.runner import dedupe_feature_records
from dataflow_playground.features.stream.worker import internal_topics
from dataflow_playground.producers.generator import GeneratorConfig, generate_table, wire_records
from dataflow_playground.producers.to_kafka import make_producer, produce


@dataclass
class ParityReport:
    events: int
    per_event: dict[str, FeatureParity]
    final_state: dict[str, FeatureParity]
    counters: dict[str, int]
    parameters: dict[str, Any] = field(default_factory=dict)
    engine: str = "faust"
    dead_letter_records: int = 0  # read back from the dead-letter topic
    # The raw per-event values behind ``per_event`` (not in ``to_json``): the stream's, by
    # event_id, as read from the worker's features topic, and the batch training table's rows.
    stream_values: dict[int, dict[str, object]] = field(default_factory=dict, repr=False)
    batch_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "engine": self.engine,
            "stream_path": stream_engine(self.engine).path,
            "dead_letter_records": self.dead_letter_records,
            "features": {n: p.metrics() for n, p in self.per_event.items()},
            "final_state": {n: {**p.metrics(), "mismatches": p.mismatches, "entities": p.count}
                            for n, p in self.final_state.items()},
            "final_state_mismatches": sum(p.mismatches for p in self.final_state.values()),
            "stream_counters": self.counters,
            "parameters": self.parameters,
        }


def read_feature_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0
                       ) -> dict[int, dict[str, object]]:
    """Per-event values from the workers' output topic, user and merchant merged by event_id.

    Reads until ``expected`` events have both stages' values (or the topic is quiet for
    ``timeout_s``); repeats (a task recomputing after a restore) are deduplicated.
    """
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(timeout_s * 1000),
                             max_poll_records=5000)
    raw: list[bytes] = []
    stages: dict[int, int] = {}
    complete = 0
    try:
        for msg in consumer:
            raw.append(msg.value)
            rec = orjson.loads(msg.value)
            if rec.get("kind") != "events":
                continue
            bit = 1 if rec["stage"] == "user" else 2
            for ev in rec["events"]:
                before = stages.get(ev["event_id"], 0)
                stages[ev["event_id"]] = before | bit
                complete += before != 3 and before | bit == 3
            if complete >= expected:
                break
    finally:
        consumer.close()
    return dedupe_feature_records(raw)[0]


def run_parity(settings: Settings, events: int, seed: int = 42, rate: float = 2.0,
               out_of_order: float = 0.0, max_lateness_ms: int = 0, allowed_lateness_ms: int = 60_000,
               malformed_rate: float = 0.0, ui: Console = console, engine: str = "faust") -> ParityReport:
    """``ui`` receives progress and notes (give a stderr console to keep stdout for JSON)."""

    def say(msg: str) -> None:
        ui.print(msg, highlight=False)

    started = stack.up(settings, components=[stack.KAFKA], on_event=lambda m: say(f"  {m}"))
    run = uuid.uuid4().hex[:10]
    topic, out_topic, dlq = f"parity-{run}", f"parity-{run}.features", f"parity-{run}.dlq"
    app_id = f"parity-{run}"
    bootstrap = settings.bootstrap_servers
    kafka_admin.ensure_topics(bootstrap, [kafka_admin.TopicSpec(topic, settings.partitions),
                                          kafka_admin.TopicSpec(out_topic, settings.partitions),
                                          kafka_admin.TopicSpec(dlq, 1)])
    cfg = GeneratorConfig(events=events, seed=seed, rate=rate, out_of_order=out_of_order,
                          max_lateness_ms=max_lateness_ms, malformed_rate=malformed_rate)
    tmp = Path(tempfile.mkdtemp(prefix="parity-", dir=settings.data_dir if settings.data_dir.exists()
                                else None))
    worker = WorkerProcess(settings, topic, out_topic, dlq, tmp / "online.sqlite", app_id,
                           allowed_lateness_ms=allowed_lateness_ms, engine=engine)
    say(f"stream path: {stream_engine(engine).path}; topic {topic}, {settings.partitions} partitions")
    try:
        worker.start()
        records = list(wire_records(cfg))
        good = pa.array([r.event_id for r in records if r.event_id is not None], pa.int64())
        # A malformed record replaces a good event: the batch side sees only what the stream can.
        table = generate_table(cfg).filter(pc.is_in(pc.field("event_id"), value_set=good))
        producer = make_producer(bootstrap)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=ui) as bar:
            task = bar.add_task("produce", total=events)
            sent = produce(producer, topic, ((r.key, r.value) for r in records),
                           on_progress=lambda n: bar.advance(task, n))
            producer.close()
            task2 = bar.add_task(f"stream ({engine} worker)", total=events)
            counters = worker.wait_drained(
                sent.sent, timeout_s=max(120.0, events / 1000),
                on_stats=lambda st: bar.update(task2, completed=st.get("consumed", 0)))
        with ui.status("reading the stream's per-event values"):
            stream_values = read_feature_topic(
                bootstrap, out_topic, min(counters["processed"], counters.get("merchant_processed", 0)))
            reader = OnlineStoreReader(worker.store)
            online = reader.all()
            reader.close()
            dead = kafka_admin.topic_size(bootstrap, dlq)
        with ui.status("batch: DuckDB SQL"):
            batch = BatchFeatures(table)
            training = batch.training_table().to_pylist()
            snapshot = batch.snapshot()
        per_event = compare(((r["event_id"], r) for r in training), stream_values)
        final = {}
        # compare() walks every feature for every entity; keep each feature to its own entity.
        for f in FEATURES:
            final[f.name] = compare(((k, v) for k, v in snapshot.items() if k[0] == f.entity.name),
                                    online, features=(f,))[f.name]
        return ParityReport(events=events, per_event=per_event, final_state=final, counters=counters,
                            engine=engine, dead_letter_records=dead,
                            stream_values=stream_values, batch_rows=training,
                            parameters={"events": events, "seed": seed, "rate": rate,
                                        "out_of_order": out_of_order, "max_lateness_ms": max_lateness_ms,
                                        "allowed_lateness_ms": allowed_lateness_ms,
                                        "malformed_rate": malformed_rate, "engine": engine,
                                        "partitions": settings.partitions})
    finally:
        worker.stop()
        existing = set(kafka_admin.list_topics(bootstrap))
        kafka_admin.delete_topics(bootstrap, [t for t in [topic, out_topic, dlq, *internal_topics(app_id)]
                                              if t in existing])
        if started.get("kafka"):
            stack.stop(stack.KAFKA, settings)
            say("  kafka: stopped (this command started it)")
