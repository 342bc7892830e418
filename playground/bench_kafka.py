"""``playground bench kafka``: kafka-python produce and consume throughput, medians of repeats.

Each repeat uses a throwaway topic. Payloads are the generator's JSON events,
encoded before the clock starts, so the figures are Kafka client + broker cost.
Consume is measured from a fresh group reading the topic from the start.
"""

from __future__ import annotations

import time
import uuid

import matplotlib.pyplot as plt
from kafka import KafkaConsumer
from rich.table import Table

from playground import kafka_admin, stack
from playground.console import console, progress
from playground.results import markdown_table, median, write_results
from playground.settings import Settings
from producers.generator import GeneratorConfig, encode_event, generate_table
from producers.to_kafka import PRODUCER_DEFAULTS, make_producer, produce


def _consume_all(bootstrap: str, topic: str, n: int) -> float:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             max_poll_records=10_000, fetch_max_bytes=64 * 2**20,
                             max_partition_fetch_bytes=16 * 2**20)
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


def run_bench(settings: Settings, events: int, repeats: int, partitions: int) -> dict[str, float]:
    started = stack.up(settings, components=[stack.KAFKA], on_event=lambda m: console.print(f"  {m}"))
    try:
        with console.status(f"encoding {events:,} events"):
            table = generate_table(GeneratorConfig(events=events, seed=7))
            records = [(str(e["user_id"]).encode(), encode_event(e)) for e in table.to_pylist()]
        payload_bytes = sum(len(v) for _, v in records)
        runs: list[dict[str, float]] = []
        warmup_n = max(events // 20, 1000)
        with progress() as bar:
            task = bar.add_task("repeats (after a warm-up)", total=repeats)
            for i in range(repeats + 1):
                n = warmup_n if i == 0 else events
                topic = f"bench-{uuid.uuid4().hex[:10]}"
                kafka_admin.ensure_topics(settings.bootstrap_servers,
                                          [kafka_admin.TopicSpec(topic, partitions)])
                producer = make_producer(settings.bootstrap_servers)
                pstats = produce(producer, topic, records[:n])
                producer.close()
                consume_s = _consume_all(settings.bootstrap_servers, topic, n)
                kafka_admin.delete_topics(settings.bootstrap_servers, [topic])
                if i == 0:
                    continue
                runs.append({"produce_s": pstats.elapsed_s, "consume_s": consume_s,
                             "produce_failed": pstats.failed})
                bar.advance(task)
    finally:
        if any(started.values()):
            stack.down(settings)

    mb = payload_bytes / 1e6
    prod_s = median([r["produce_s"] for r in runs])
    cons_s = median([r["consume_s"] for r in runs])
    figures = {
        "produce_events_per_s": events / prod_s, "produce_mb_per_s": mb / prod_s,
        "consume_events_per_s": events / cons_s, "consume_mb_per_s": mb / cons_s,
        "bytes_per_event": payload_bytes / events,
    }
    ratio = figures["consume_events_per_s"] / figures["produce_events_per_s"]
    takeaway = (
        f"With kafka-python on this machine, producing {events:,} events ran at "
        f"{figures['produce_events_per_s']:,.0f} events/s ({figures['produce_mb_per_s']:.1f} MB/s) and "
        f"consuming at {figures['consume_events_per_s']:,.0f} events/s "
        f"({figures['consume_mb_per_s']:.1f} MB/s): consuming is {ratio:.1f}x "
        f"{'faster' if ratio >= 1 else 'slower'} than producing (medians of {repeats})."
    )
    t = Table(title=f"kafka-python, {events:,} events x {repeats} repeats (median)")
    for c in ("direction", "events/s", "MB/s"):
        t.add_column(c, justify="right")
    t.add_row("produce", f"{figures['produce_events_per_s']:,.0f}", f"{figures['produce_mb_per_s']:.1f}")
    t.add_row("consume", f"{figures['consume_events_per_s']:,.0f}", f"{figures['consume_mb_per_s']:.1f}")
    console.print(t)
    console.print(f"[bold]Takeaway:[/bold] {takeaway}")

    def chart() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(["produce", "consume"],
               [figures["produce_events_per_s"], figures["consume_events_per_s"]],
               color=["#4c72b0", "#55a868"])
        ax.set_ylabel("events/s (median)")
        ax.set_title(f"kafka-python, {events:,} events, {partitions} partitions")
        return fig

    md = markdown_table(["direction", "events/s", "MB/s"], [
        ["produce", figures["produce_events_per_s"], figures["produce_mb_per_s"]],
        ["consume", figures["consume_events_per_s"], figures["consume_mb_per_s"]]])
    write_results("bench_kafka", settings.results_dir, title="Kafka throughput with kafka-python",
                  parameters={"events": events, "repeats": repeats, "partitions": partitions,
                              "producer": {k: str(v) for k, v in PRODUCER_DEFAULTS.items()},
                              "kafka_version": settings.kafka_version},
                  data={"repeats": runs, "medians": figures}, table_md=md, takeaway=takeaway,
                  chart=chart)
    return figures
