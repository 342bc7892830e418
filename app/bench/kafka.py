"""``playground bench kafka``: kafka-python produce and consume throughput, medians of repeats.

Each repeat uses a throwaway topic. Payloads are the generator's JSON events,
encoded before the clock starts, so the figures are Kafka client + broker cost. At most
``POOL_EVENTS`` distinct events are held in memory; larger runs send that pool again and
again, so a run of any size has the same footprint (its peak RSS is in the results).
Consume is measured from a fresh group reading the topic from the start.
"""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import matplotlib.pyplot as plt
from kafka import KafkaConsumer
from rich.table import Table

from dataflow_playground.app import stack
from dataflow_playground.app.console import console, progress
from dataflow_playground.app.results import markdown_table, median, write_results
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.continuous import peak_rss_mb
from dataflow_playground.producers.generator import GeneratorConfig, encode_event, generate_table
from dataflow_playground.producers.to_kafka import PRODUCER_DEFAULTS, make_producer, produce

POOL_EVENTS = 100_000
MAX_EVENTS = 100_000_000
MAX_REPEATS = 20
MAX_PARTITIONS = 64


def check_args(events: int, repeats: int, partitions: int) -> None:
    """Refuse numbers that make no run (0 events) or no sense; the message names the argument."""
    problems = [f"{name} must be between 1 and {hi:,}, got {value:,}"
                for name, value, hi in (("--events", events, MAX_EVENTS), ("--repeats", repeats, MAX_REPEATS),
                                        ("--partitions", partitions, MAX_PARTITIONS))
                if not 1 <= value <= hi]
    if problems:
        raise ValueError("; ".join(problems))


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, so the ``finally`` that stops the broker runs."""
    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _consume_all(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=10_000, fetch_max_bytes=64 * 2**20,
                             max_partition_fetch_bytes=16 * 2**20)
    kafka_admin.subscribe(consumer, [topic])
    got = 0
    start = None
    deadline = time.monotonic() + 600
    while got < n and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            if start is None:
                start = time.perf_counter()  # from the first record: excludes group join time
            got += len(batch)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    if got < n:
        raise RuntimeError(f"consumed {got} of {n} messages before the 10 min deadline")
    return elapsed


# Producer profiles compared: the tuned settings against kafka-python's own defaults
# (same durability: acks=all with idempotence), so the tuning claim is measured.
PROFILES: dict[str, dict[str, object]] = {
    "tuned": {},
    "library defaults": {"linger_ms": 0, "batch_size": 16_384, "compression_type": None},
}


def _one_run(settings: Settings, records: list[tuple[bytes, bytes]], n: int, partitions: int,
             overrides: dict[str, object]) -> dict[str, float]:
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    kafka_admin.ensure_topics(settings.bootstrap_servers, [kafka_admin.TopicSpec(topic, partitions)])
    producer = make_producer(settings.bootstrap_servers, **overrides)
    pstats = produce(producer, topic, itertools.islice(itertools.cycle(records), n))
    producer.close()
    consume_s = _consume_all(settings.bootstrap_servers, topic, n)
    kafka_admin.delete_topics(settings.bootstrap_servers, [topic])
    return {"produce_s": pstats.elapsed_s, "consume_s": consume_s, "produce_failed": pstats.failed}


def run_bench(settings: Settings, events: int, repeats: int, partitions: int,
              profiles: list[str] | None = None) -> dict[str, dict[str, float]]:
    check_args(events, repeats, partitions)
    names = profiles or list(PROFILES)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    # Known before `up`, so a signal that lands while `up` still creates topics stops the broker too.
    ours = stack.read_pid(settings, stack.KAFKA.name) is None and not settings.bootstrap_servers_override
    with _stop_on_sigterm():
        try:
            stack.up(settings, components=[stack.KAFKA], on_event=lambda m: console.print(f"  {m}"))
            payload_bytes = _runs(settings, events, repeats, partitions, names, runs)
        finally:
            if ours:
                stack.down(settings)
    return _report(settings, events, repeats, partitions, names, runs, payload_bytes)


def _runs(settings: Settings, events: int, repeats: int, partitions: int, names: list[str],
          runs: dict[str, list[dict[str, float]]]) -> float:
    """The warm-up and the timed repeats; returns the payload bytes of ``events`` events."""
    pool = min(events, POOL_EVENTS)
    with console.status(f"encoding {pool:,} events (sent {events / pool:.1f}x over)"):
        table = generate_table(GeneratorConfig(events=pool, seed=7))
        records = [(str(e["user_id"]).encode(), encode_event(e)) for e in table.to_pylist()]
        del table
    payload_bytes = sum(len(v) for _, v in records) * events / pool
    with progress() as bar:
        task = bar.add_task("runs (after a warm-up)", total=repeats * len(names))
        _one_run(settings, records, max(events // 20, 1000), partitions, {})  # warm-up
        # Profiles interleaved per repeat, so drift on the machine hits them alike.
        for _ in range(repeats):
            for name in names:
                runs[name].append(_one_run(settings, records, events, partitions, PROFILES[name]))
                bar.advance(task)
    return payload_bytes


def _report(settings: Settings, events: int, repeats: int, partitions: int, names: list[str],
            runs: dict[str, list[dict[str, float]]], payload_bytes: float) -> dict[str, dict[str, float]]:

    mb = payload_bytes / 1e6
    medians: dict[str, dict[str, float]] = {}
    for name in names:
        prod_s = median([r["produce_s"] for r in runs[name]])
        cons_s = median([r["consume_s"] for r in runs[name]])
        medians[name] = {
            "produce_events_per_s": events / prod_s, "produce_mb_per_s": mb / prod_s,
            "consume_events_per_s": events / cons_s, "consume_mb_per_s": mb / cons_s,
        }
    tuned = medians[names[0]]
    ratio = tuned["consume_events_per_s"] / tuned["produce_events_per_s"]
    takeaway = (
        f"With kafka-python on this machine ({names[0]} producer), producing {events:,} events ran at "
        f"{tuned['produce_events_per_s']:,.0f} events/s ({tuned['produce_mb_per_s']:.1f} MB/s) and "
        f"consuming at {tuned['consume_events_per_s']:,.0f} events/s "
        f"({tuned['consume_mb_per_s']:.1f} MB/s): consuming is {ratio:.1f}x "
        f"{'faster' if ratio >= 1 else 'slower'} than producing (medians of {repeats})."
    )
    if len(names) > 1:
        other = medians[names[1]]
        gain = tuned["produce_events_per_s"] / other["produce_events_per_s"]
        takeaway += (f" The {names[0]} producer settings produce {gain:.2f}x the events/s of "
                     f"{names[1]} ({other['produce_events_per_s']:,.0f} events/s).")

    headers = ["producer", "produce events/s", "produce MB/s", "consume events/s", "consume MB/s"]
    rows: list[list[object]] = [
        [name, m["produce_events_per_s"], m["produce_mb_per_s"], m["consume_events_per_s"],
         m["consume_mb_per_s"]] for name, m in medians.items()]
    t = Table(title=f"kafka-python, {events:,} events x {repeats} repeats (median)")
    for c in headers:
        t.add_column(c, justify="right")
    for name, m in medians.items():
        t.add_row(name, f"{m['produce_events_per_s']:,.0f}", f"{m['produce_mb_per_s']:.1f}",
                  f"{m['consume_events_per_s']:,.0f}", f"{m['consume_mb_per_s']:.1f}")
    console.print(t)
    console.print(f"[bold]Takeaway:[/bold] {takeaway}")

    def chart() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            vals = [medians[name]["produce_events_per_s"], medians[name]["consume_events_per_s"]]
            ax.bar([x + i * width for x in range(2)], vals, width, label=name)
        ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(2)], ["produce", "consume"])
        ax.set_ylabel("events/s (median)")
        ax.set_title(f"kafka-python, {events:,} events, {partitions} partitions")
        ax.legend()
        return fig

    write_results("bench_kafka", settings.results_dir, title="Kafka throughput with kafka-python",
                  parameters={"events": events, "repeats": repeats, "partitions": partitions,
                              "payload_bytes_per_event": payload_bytes / events,
                              "producer_tuned": {k: str(v) for k, v in PRODUCER_DEFAULTS.items()},
                              "profiles": {k: {kk: str(vv) for kk, vv in v.items()}
                                           for k, v in PROFILES.items() if k in names},
                              "kafka_version": settings.kafka_version},
                  data={"repeats": runs, "medians": medians, "peak_rss_mb": peak_rss_mb(),
                        "distinct_events_in_memory": min(events, POOL_EVENTS)},
                  table_md=markdown_table(headers, rows), takeaway=takeaway, chart=chart)
    return medians
