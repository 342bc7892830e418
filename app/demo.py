"""The end-to-end demo: generate -> Kafka -> DuckDB, with a summary and results/demo.*."""

from __future__ import annotations

import time
import uuid

import matplotlib.pyplot as plt
from rich.table import Table

from dataflow_playground.app import stack
from dataflow_playground.app.console import console, progress
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.consumers.kafka_to_duckdb import KafkaToDuckDB, SinkStats
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, wire_records
from dataflow_playground.producers.to_kafka import make_producer, produce
from dataflow_playground.storage.duckdb_store import EventStore


def run_demo(settings: Settings, events: int, malformed_rate: float, seed: int,
             keep_running: bool = False) -> dict[str, float]:
    started = stack.up(settings, on_event=lambda m: console.print(f"  {m}"))
    # A topic of its own per run, so a rerun never mixes with earlier runs' messages.
    topic = f"{settings.topic}.demo-{uuid.uuid4().hex[:8]}"
    group = f"demo-sink-{uuid.uuid4().hex[:8]}"
    db_path = settings.data_dir / "demo.duckdb"
    try:
        kafka_admin.ensure_topics(settings.bootstrap_servers, [
            kafka_admin.TopicSpec(topic, settings.partitions, settings.retention_ms)])
        cfg = GeneratorConfig(events=events, seed=seed, malformed_rate=malformed_rate)
        with console.status(f"generating {events:,} seeded transactions"):
            records = list(wire_records(cfg))
        sent_good = sum(1 for r in records if r.malformed is None)

        producer = make_producer(settings.bootstrap_servers)
        with progress() as bar:
            task = bar.add_task("produce -> Kafka", total=events)
            pstats = produce(producer, topic, ((r.key, r.value) for r in records),
                             on_progress=lambda n: bar.advance(task, n))
        producer.close()
        lag_before = kafka_admin.group_lag(settings.bootstrap_servers, group, topic)

        db_path.unlink(missing_ok=True)
        db_path.with_suffix(".duckdb.wal").unlink(missing_ok=True)
        with EventStore(db_path) as store:
            sink = KafkaToDuckDB(settings, store, group=group, topic=topic)
            with progress() as bar:
                task = bar.add_task("consume -> DuckDB", total=events)
                done = [0]

                def on_batch(s: SinkStats) -> None:
                    bar.advance(task, s.consumed - done[0])
                    done[0] = s.consumed

                sstats = sink.run(max_events=events, idle_timeout_s=30, on_batch=on_batch)
            sink.close()
            rows, dead, dups = store.count(), store.count_dead(), store.duplicate_ids()
            # Valid records not stored because their event_id already was (the sink's figure).
            reused = store.count_duplicates()
            reasons = store.dead_letter_reasons()
        lag_after = kafka_admin.group_lag(settings.bootstrap_servers, group, topic)
        kafka_admin.delete_topics(settings.bootstrap_servers, [topic])
    finally:
        if not keep_running:
            _stop_started(settings, started)

    mb = pstats.bytes / 1e6
    summary = {
        "events_sent": pstats.sent, "produce_failed": pstats.failed,
        "produce_events_per_s": pstats.events_per_s, "produce_mb_per_s": mb / pstats.elapsed_s,
        "consume_events_per_s": sstats.events_per_s,
        "consume_mb_per_s": mb / sstats.elapsed_s if sstats.elapsed_s else 0.0,
        "lag_before_sink": lag_before, "lag_after_sink": lag_after,
        "rows_stored": rows, "dead_letters": dead, "duplicates": reused, "duplicate_rows": dups,
        "good_sent": sent_good,
    }
    balanced = rows + dead + reused == pstats.sent and rows + reused == sent_good and dups == 0
    _print_summary(summary, reasons, balanced)
    takeaway = (
        f"{pstats.sent:,} events went through Kafka into DuckDB: {rows:,} stored and {dead:,} "
        f"dead-lettered ({'balanced' if balanced else 'NOT balanced'}: sent = stored + dead + "
        f"duplicates), {reused} duplicates (event_id already stored), {dups} duplicate rows. "
        f"Producing ran at {pstats.events_per_s:,.0f} events/s and the "
        f"validating DuckDB sink at {sstats.events_per_s:,.0f} events/s "
        f"({pstats.events_per_s / max(sstats.events_per_s, 1e-9):.1f}x)."
    )

    def chart() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(["produce (kafka-python)", "consume + validate + DuckDB"],
               [summary["produce_events_per_s"], summary["consume_events_per_s"]],
               color=["#4c72b0", "#dd8452"])
        ax.set_ylabel("events/s")
        ax.set_title(f"demo: {events:,} events, {settings.partitions} partitions")
        return fig

    table = markdown_table(["figure", "value"], [[k, v] for k, v in summary.items()])
    paths = write_results(
        "demo", settings.results_dir, title="Demo: generator -> Kafka -> DuckDB",
        parameters={"events": events, "malformed_rate": malformed_rate, "seed": seed,
                    "partitions": settings.partitions, "kafka_version": settings.kafka_version},
        data={"summary": summary, "dead_letter_reasons": reasons, "balanced": balanced},
        table_md=table, takeaway=takeaway, chart=chart)
    console.print(f"[bold]Takeaway:[/bold] {takeaway}")
    console.print(f"results: {', '.join(str(p) for p in paths.values())}")
    if not balanced:
        raise SystemExit("demo delivery check failed: sent != stored + dead-lettered + duplicates")
    return summary


def _stop_started(settings: Settings, started: dict[str, bool]) -> None:
    """Stop only what this run started; a stack that was already up stays up."""
    if any(started.values()):
        t0 = time.perf_counter()
        stack.down(settings, on_event=lambda m: console.print(f"  {m}"))
        console.print(f"  stack stopped in {time.perf_counter() - t0:.1f}s")


def _print_summary(s: dict[str, float], reasons: dict[str, int], balanced: bool) -> None:
    t = Table(title="demo summary")
    t.add_column("figure", overflow="fold")
    t.add_column("value", justify="right", overflow="fold")
    t.add_row("events sent", f"{s['events_sent']:,}")
    t.add_row("produce", f"{s['produce_events_per_s']:,.0f} ev/s  {s['produce_mb_per_s']:.1f} MB/s")
    t.add_row("consume -> DuckDB", f"{s['consume_events_per_s']:,.0f} ev/s  "
              f"{s['consume_mb_per_s']:.1f} MB/s")
    t.add_row("lag before / after sink", f"{s['lag_before_sink']:,} / {s['lag_after_sink']:,}")
    t.add_row("rows stored", f"{s['rows_stored']:,}")
    t.add_row("dead letters", f"{s['dead_letters']:,}  " +
              ", ".join(f"{k}={v}" for k, v in reasons.items()))
    t.add_row("duplicates (event_id already stored)", f"{s['duplicates']:,}")
    t.add_row("duplicate rows", f"{s['duplicate_rows']:,}")
    t.add_row("delivery check", "[green]balanced" if balanced else "[red]NOT balanced")
    console.print(t)
