"""``playground bench batch-vs-stream``: the same features, batch (DuckDB) vs stream (faust worker).

Measures: batch wall time and events/s over N events (median of repeats after a
warm-up); stream sustained events/s (a worker catching up on a pre-filled topic),
its CPU seconds per 1M events, and freshness (Kafka CreateTime of an event -> the
commit that makes its entities' values visible in the online store) p50/p99 at
fixed offered loads: ~10/50/90% of the measured stream maximum, plus 2,000 events/s.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from features.batch_sql import BatchFeatures
from features.definitions import FEATURES
from features.online_store import OnlineStoreReader
from features.worker_process import WorkerProcess
from playground import kafka_admin, stack
from playground.console import console
from playground.results import markdown_table, median, timed_repeats, write_results
from playground.settings import Settings
from producers.generator import GeneratorConfig, generate_table, wire_records
from producers.to_kafka import make_producer, produce

TARGET_BATCH_EPS = 500_000
TARGET_STREAM_EPS = 10_000
TARGET_FRESHNESS_P99_MS = 100.0
FRESHNESS_TARGET_LOAD = 2_000


def _bench_batch(events: int, repeats: int) -> dict[str, Any]:
    table = generate_table(GeneratorConfig(events=events, rate=2.0))
    batch = BatchFeatures(table)
    times = timed_repeats(lambda: batch.training_table(), repeats=repeats, warmup=1)
    wall = median(times)
    return {"events": events, "repeats_s": times, "wall_s": wall, "events_per_s": events / wall}


class _Run:
    """A fresh topic trio and a worker for one measurement; cleaned up on exit."""

    def __init__(self, settings: Settings, workdir: Path, record_freshness: bool) -> None:
        rid = uuid.uuid4().hex[:8]
        self.settings, self.topic = settings, f"bench-bs-{rid}"
        self.topics = [self.topic, f"{self.topic}.features", f"{self.topic}.dlq",
                       f"{self.topic}-__assignor-__leader"]
        kafka_admin.ensure_topics(settings.bootstrap_servers, [
            kafka_admin.TopicSpec(self.topic, settings.partitions),
            kafka_admin.TopicSpec(self.topics[1], settings.partitions),
            kafka_admin.TopicSpec(self.topics[2], 1)])
        self.worker = WorkerProcess(settings, self.topic, self.topics[1], self.topics[2],
                                    workdir / f"{rid}.sqlite", self.topic,
                                    record_freshness=record_freshness)

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        kafka_admin.delete_topics(self.settings.bootstrap_servers, self.topics)


def _bench_stream_max(settings: Settings, workdir: Path, events: int) -> dict[str, Any]:
    cfg = GeneratorConfig(events=events, rate=2.0, seed=7)
    with _Run(settings, workdir, record_freshness=False) as run:
        producer = make_producer(settings.bootstrap_servers)
        produce(producer, run.topic, ((r.key, r.value) for r in wire_records(cfg)))
        producer.close()
        run.worker.start()
        cpu0, t0 = run.worker.cpu_seconds(), time.perf_counter()
        with console.status(f"stream: worker catching up on {events:,} events"):
            run.worker.wait_drained(events, timeout_s=max(120.0, events / 500))
        wall, cpu = time.perf_counter() - t0, run.worker.cpu_seconds() - cpu0
    return {"events": events, "wall_s": wall, "events_per_s": events / wall,
            "cpu_s_per_1m_events": cpu / events * 1_000_000}


def _paced_produce(settings: Settings, topic: str, cfg: GeneratorConfig, rate: float) -> float:
    """Send at ``rate`` records/s (1 ms ticks); return the achieved rate."""
    producer = make_producer(settings.bootstrap_servers, linger_ms=1)
    records = [(r.key, r.value) for r in wire_records(cfg)]
    start = time.perf_counter()
    for i, (k, v) in enumerate(records):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0.001:
            time.sleep(delay)
        producer.send(topic, key=k, value=v)
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    return len(records) / elapsed


def _bench_freshness(settings: Settings, workdir: Path, rate: float, seconds: float) -> dict[str, Any]:
    events = max(int(rate * seconds), 100)
    cfg = GeneratorConfig(events=events, rate=2.0, seed=11)
    with _Run(settings, workdir, record_freshness=True) as run:
        run.worker.start()
        with console.status(f"freshness at {rate:,.0f} events/s for {seconds:.0f}s"):
            achieved = _paced_produce(settings, run.topic, cfg, rate)
            run.worker.wait_drained(events, timeout_s=120)
        reader = OnlineStoreReader(run.worker.store)
        rows = reader.freshness()
        reader.close()
    lat = np.array([visible - produced for _eid, produced, visible in rows], dtype=float)
    return {"offered_events_per_s": rate, "achieved_events_per_s": achieved, "events": events,
            "samples": int(lat.size), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


def run_bench(settings: Settings, events: int, stream_events: int, repeats: int,
              freshness_seconds: float) -> dict[str, Path]:
    started = stack.up(settings, components=[stack.KAFKA], on_event=lambda m: console.print(f"  {m}"))
    workdir = settings.data_dir / "bench-batch-stream"
    try:
        with console.status(f"batch: DuckDB SQL over {events:,} events ({len(FEATURES)} features)"):
            batch = _bench_batch(events, repeats)
        console.print(f"batch: {batch['wall_s']:.2f}s, {batch['events_per_s']:,.0f} events/s")
        stream = _bench_stream_max(settings, workdir, stream_events)
        console.print(f"stream: {stream['events_per_s']:,.0f} events/s sustained, "
                      f"{stream['cpu_s_per_1m_events']:.0f} CPU s per 1M events")
        loads = sorted({round(stream["events_per_s"] * f, -1) for f in (0.1, 0.5, 0.9)}
                       | {float(FRESHNESS_TARGET_LOAD)})
        fresh = []
        for rate in loads:
            r = _bench_freshness(settings, workdir, rate, freshness_seconds)
            console.print(f"  freshness at {rate:,.0f}/s: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
            fresh.append(r)
    finally:
        if started.get("kafka"):
            stack.stop(stack.KAFKA, settings)
    return _write(settings, batch, stream, fresh, events, stream_events, repeats, freshness_seconds)


def _write(settings: Settings, batch: dict[str, Any], stream: dict[str, Any], fresh: list[dict[str, Any]],
           events: int, stream_events: int, repeats: int, freshness_seconds: float) -> dict[str, Path]:
    ratio = batch["events_per_s"] / stream["events_per_s"]
    at_target = next(f for f in fresh if f["offered_events_per_s"] == FRESHNESS_TARGET_LOAD)
    rows: list[list[Any]] = [
        ["batch events/s (DuckDB SQL)", batch["events_per_s"], TARGET_BATCH_EPS,
         batch["events_per_s"] / TARGET_BATCH_EPS],
        ["stream events/s (faust worker)", stream["events_per_s"], TARGET_STREAM_EPS,
         stream["events_per_s"] / TARGET_STREAM_EPS],
        [f"freshness p99 ms at {FRESHNESS_TARGET_LOAD:,}/s", at_target["p99_ms"], TARGET_FRESHNESS_P99_MS,
         TARGET_FRESHNESS_P99_MS / at_target["p99_ms"]],
    ]
    table = markdown_table(["measure", "measured", "target", "measured/target (>=1 met)"], rows)
    table += "\n\n" + markdown_table(
        ["offered events/s", "achieved events/s", "p50 ms", "p99 ms", "max ms"],
        [[f["offered_events_per_s"], f["achieved_events_per_s"], f["p50_ms"], f["p99_ms"], f["max_ms"]]
         for f in fresh])
    table += (f"\n\nBatch wall time {batch['wall_s']:.2f}s for {events:,} events; stream CPU "
              f"{stream['cpu_s_per_1m_events']:.0f} s per 1M events.")
    takeaway = (f"Batch computes the same {len(FEATURES)} features {ratio:,.0f}x faster than the stream "
                f"worker ({batch['events_per_s']:,.0f} vs {stream['events_per_s']:,.0f} events/s), but "
                f"only the stream has values {at_target['p99_ms']:.0f} ms (p99) after an event at "
                f"{FRESHNESS_TARGET_LOAD:,} events/s.")

    def chart() -> Figure:
        fig = Figure(figsize=(10, 4))
        ax1, ax2 = fig.subplots(1, 2)
        ax1.bar(["batch\n(DuckDB)", "stream\n(faust)"], [batch["events_per_s"], stream["events_per_s"]],
                color=["#4c72b0", "#dd8452"])
        ax1.set_yscale("log")
        ax1.set_ylabel("events/s (log)")
        ax1.set_title(f"throughput, ratio {ratio:,.0f}x")
        x = [f["offered_events_per_s"] for f in fresh]
        ax2.plot(x, [f["p50_ms"] for f in fresh], "o-", label="p50")
        ax2.plot(x, [f["p99_ms"] for f in fresh], "s-", label="p99")
        ax2.axhline(TARGET_FRESHNESS_P99_MS, color="grey", ls="--", label="p99 target")
        ax2.set_xlabel("offered load, events/s")
        ax2.set_ylabel("produced -> visible, ms")
        ax2.set_title("stream freshness")
        ax2.legend()
        return fig

    return write_results(
        "batch_vs_stream", settings.results_dir, title="Batch vs stream features",
        parameters={"events": events, "stream_events": stream_events, "repeats": repeats,
                    "freshness_seconds": freshness_seconds, "features": len(FEATURES),
                    "partitions": settings.partitions},
        data={"batch": batch, "stream": stream, "freshness": fresh, "batch_stream_ratio": ratio},
        table_md=table, takeaway=takeaway, chart=chart)
