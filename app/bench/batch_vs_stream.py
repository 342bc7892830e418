"""``playground bench batch-vs-stream``: the same features, batch vs the stream engines.

Batch is ``BatchFeatures.training_table()``: the vectorised pass of ``features/batch_numpy.py``,
proven equal to the DuckDB window SQL it is compiled beside (``training_table(reference=True)``).

Measures: batch wall time and events/s over N events (median of repeats after a
warm-up); for each stream engine (faust, kafka-python): sustained events/s (one worker,
owning every task of both stages, catching up on a pre-filled topic, median of repeats),
its CPU seconds per 1M events, and freshness (Kafka CreateTime of an event -> the commit
that makes its values visible in both stages, user and merchant, of the online store)
p50/p99 at ~10/50/90% of that engine's maximum, plus 2,000 events/s. Topics, worker groups,
pacing and the freshness figure are :mod:`.stream`'s (``playground bench stream`` measures
the same engines by worker count, with recovery).
The load average before and after is recorded: on a shared 2-core machine it moves
the figures several-fold.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dataflow_playground.app import stack
from dataflow_playground.app.bench.stream import (
    StreamRun,
    event_freshness,
    event_records,
    latency_summary,
    paced_produce,
)
from dataflow_playground.app.console import console
from dataflow_playground.app.results import markdown_table, median, timed_repeats, write_results
from dataflow_playground.core.settings import STREAM_ENGINES, Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import FEATURES
from dataflow_playground.features.stream.registry import stream_engine
from dataflow_playground.producers.generator import GeneratorConfig, generate_table

TARGET_BATCH_EPS = 1_000_000
TARGET_STREAM_EPS = 10_000
TARGET_FRESHNESS_P99_MS = 100.0
FRESHNESS_TARGET_LOAD = 2_000


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _bench_batch(events: int, repeats: int) -> dict[str, Any]:
    table = generate_table(GeneratorConfig(events=events, rate=2.0))
    batch = BatchFeatures(table)
    times = timed_repeats(batch.training_table, repeats=repeats, warmup=1)
    wall = median(times)
    return {"events": events, "repeats_s": times, "wall_s": wall, "events_per_s": events / wall}


def _bench_stream_max(settings: Settings, workdir: Path, events: int, engine: str) -> dict[str, Any]:
    records = event_records(events, seed=7)
    with StreamRun(settings, workdir, engine, prefix="bench-bs") as run:
        run.produce(records)
        run.group.start(1)  # returns once the worker owns every task (both stages)
        cpu0, t0 = run.group.cpu_seconds(), time.perf_counter()
        with console.status(f"stream ({engine}): worker catching up on {events:,} events"):
            run.group.wait_drained(events, timeout_s=max(120.0, events / 500))
        wall, cpu = time.perf_counter() - t0, run.group.cpu_seconds() - cpu0
    return {"events": events, "wall_s": wall, "events_per_s": events / wall,
            "cpu_s_per_1m_events": cpu / events * 1_000_000}


def _bench_freshness(settings: Settings, workdir: Path, rate: float, seconds: float,
                     engine: str) -> dict[str, Any]:
    """Paced events on a fresh topic, one running worker; per event, produced -> visible in both
    stages (user and merchant): an event's values are complete only once both are."""
    events = max(int(rate * seconds), 100)
    records = event_records(events, seed=11)
    with StreamRun(settings, workdir, engine, record_freshness=True, prefix="bench-bs") as run:
        run.group.start(1)
        with console.status(f"freshness ({engine}) at {rate:,.0f} events/s for {seconds:.0f}s"):
            achieved = paced_produce(settings, run.topic, records, rate).achieved_events_per_s
            run.group.wait_drained(events, timeout_s=120)
        reader = run.reader()
        try:
            fresh = event_freshness(reader.freshness())
        finally:
            reader.close()
    return {"offered_events_per_s": rate, "achieved_events_per_s": achieved, "events": events,
            "incomplete": fresh.incomplete, **latency_summary(fresh.values_ms)}


Measured = dict[str, Any]


def _bench_engine(settings: Settings, workdir: Path, engine: str, stream_events: int,
                  stream_repeats: int, freshness_seconds: float) -> tuple[Measured, list[Measured]]:
    runs = [_bench_stream_max(settings, workdir, stream_events, engine) for _ in range(stream_repeats)]
    stream: Measured = {"engine": engine, "events": stream_events, "runs": runs,
              **{k: median([r[k] for r in runs]) for k in ("wall_s", "events_per_s", "cpu_s_per_1m_events")}}
    console.print(f"stream ({engine}): {stream['events_per_s']:,.0f} events/s sustained (median of "
                  f"{len(runs)}), {stream['cpu_s_per_1m_events']:.0f} CPU s per 1M events")
    loads = sorted({round(stream["events_per_s"] * f, -1) for f in (0.1, 0.5, 0.9)}
                   | {float(FRESHNESS_TARGET_LOAD)})
    fresh = []
    for rate in loads:
        r = _bench_freshness(settings, workdir, rate, freshness_seconds, engine)
        r["share_of_max"] = rate / stream["events_per_s"]
        console.print(f"  {engine} freshness at {rate:,.0f}/s: p50 {r['p50_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms")
        fresh.append(r)
    return stream, fresh


def run_bench(settings: Settings, events: int, stream_events: int, repeats: int,
              freshness_seconds: float, engines: list[str] | None = None,
              stream_repeats: int = 2) -> dict[str, Path]:
    engines = engines or list(STREAM_ENGINES)
    for name in engines:
        stream_engine(name)  # an unknown name fails here, naming the choices
    started = stack.up(settings, components=[stack.KAFKA], on_event=lambda m: console.print(f"  {m}"))
    workdir = settings.data_dir / "bench-batch-stream"
    load_before = os.getloadavg()
    try:
        with console.status(f"batch: training_table() over {events:,} events ({len(FEATURES)} features)"):
            batch = _bench_batch(events, repeats)
        console.print(f"batch: {batch['wall_s']:.2f}s, {batch['events_per_s']:,.0f} events/s")
        streams: dict[str, dict[str, Any]] = {}
        fresh: dict[str, list[dict[str, Any]]] = {}
        for engine in engines:
            streams[engine], fresh[engine] = _bench_engine(settings, workdir, engine, stream_events,
                                                           stream_repeats, freshness_seconds)
    finally:
        if started.get("kafka"):
            stack.stop(stack.KAFKA, settings)
    load = {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()}
    return _write(settings, batch, streams, fresh, load,
                  {"events": events, "stream_events": stream_events, "repeats": repeats,
                   "stream_repeats": stream_repeats, "freshness_seconds": freshness_seconds,
                   "features": len(FEATURES), "partitions": settings.partitions, "engines": engines})


def _write(settings: Settings, batch: dict[str, Any], streams: dict[str, dict[str, Any]],
           fresh: dict[str, list[dict[str, Any]]], load: dict[str, Any],
           parameters: dict[str, Any]) -> dict[str, Path]:
    batch_eps = batch["events_per_s"]
    at_target = {e: next(f for f in fresh[e] if f["offered_events_per_s"] == FRESHNESS_TARGET_LOAD)
                 for e in streams}
    rows: list[list[Any]] = [
        ["batch events/s (training_table)", batch_eps, TARGET_BATCH_EPS, batch_eps / TARGET_BATCH_EPS],
    ]
    for e, st in streams.items():
        rows.append([f"stream events/s ({e})", st["events_per_s"], TARGET_STREAM_EPS,
                     st["events_per_s"] / TARGET_STREAM_EPS])
        rows.append([f"freshness p99 ms at {FRESHNESS_TARGET_LOAD:,}/s ({e})", at_target[e]["p99_ms"],
                     TARGET_FRESHNESS_P99_MS, TARGET_FRESHNESS_P99_MS / at_target[e]["p99_ms"]])
    table = markdown_table(["measure", "measured", "target", "measured/target (>=1 met)"], rows)
    table += "\n\n" + markdown_table(
        ["engine", "sustained events/s", "CPU s per 1M events", "wall s", "batch/stream ratio"],
        [[e, st["events_per_s"], st["cpu_s_per_1m_events"], st["wall_s"], batch_eps / st["events_per_s"]]
         for e, st in streams.items()])
    table += "\n\n" + markdown_table(
        ["engine", "offered events/s", "share of its max", "achieved events/s", "p50 ms", "p99 ms", "max ms"],
        [[e, f["offered_events_per_s"], f["share_of_max"], f["achieved_events_per_s"], f["p50_ms"],
          f["p99_ms"], f["max_ms"]] for e in streams for f in fresh[e]])
    table += (f"\n\nBatch wall time {batch['wall_s']:.2f}s for {batch['events']:,} events. Load average "
              f"(1/5/15 min) before {tuple(round(x, 2) for x in load['loadavg_1_5_15_before'])}, after "
              f"{tuple(round(x, 2) for x in load['loadavg_1_5_15_after'])}.")
    best = max(streams, key=lambda e: streams[e]["events_per_s"])
    others = [e for e in streams if e != best]
    vs = (f" ({streams[best]['events_per_s'] / streams[others[0]]['events_per_s']:.1f}x {others[0]}, "
          f"{streams[others[0]]['cpu_s_per_1m_events'] / streams[best]['cpu_s_per_1m_events']:.1f}x less CPU "
          f"per event)" if others else "")
    takeaway = (f"Batch computes the same {len(FEATURES)} features at {batch_eps:,.0f} events/s, "
                f"{batch_eps / streams[best]['events_per_s']:,.0f}x the best stream engine, {best} "
                f"({streams[best]['events_per_s']:,.0f} events/s{vs}); only the stream has values soon after "
                f"an event: p99 {at_target[best]['p99_ms']:,.0f} ms at {FRESHNESS_TARGET_LOAD:,} events/s "
                f"({best}). Targets: batch {_met(batch_eps >= TARGET_BATCH_EPS)}, stream "
                f"{_met(streams[best]['events_per_s'] >= TARGET_STREAM_EPS)}, freshness "
                f"{_met(at_target[best]['p99_ms'] <= TARGET_FRESHNESS_P99_MS)}.")
    colors = {"faust": "#dd8452", "kafka-python": "#55a868"}

    def chart() -> Figure:
        fig = Figure(figsize=(12, 4.5))
        ax1, ax2 = fig.subplots(1, 2)
        labels = ["batch", *(f"stream\n{e}" for e in streams)]
        vals = [batch_eps, *(st["events_per_s"] for st in streams.values())]
        ax1.bar(labels, vals, color=["#4c72b0", *(colors.get(e, "grey") for e in streams)])
        ax1.axhline(TARGET_BATCH_EPS, color="#4c72b0", ls="--", lw=1, label="batch target")
        ax1.axhline(TARGET_STREAM_EPS, color="grey", ls=":", lw=1, label="stream target")
        ax1.set_yscale("log")
        ax1.set_ylabel("events/s (log)")
        ax1.set_title("throughput (median)")
        ax1.legend(fontsize=8)
        # Grouped bars: one group per load point (share of each engine's max, then the 2,000/s target).
        width = 0.8 / (2 * len(streams))
        n_points = max(len(f) for f in fresh.values())
        for i, e in enumerate(streams):
            xs = np.arange(len(fresh[e]))
            for j, (pct, hatch) in enumerate((("p50_ms", ""), ("p99_ms", "//"))):
                ax2.bar(xs + (2 * i + j - len(streams) + 0.5) * width, [f[pct] for f in fresh[e]], width,
                        color=colors.get(e, "grey"), hatch=hatch, label=f"{e} {pct[:3]}")
        ax2.set_xticks(np.arange(n_points))
        ax2.set_xticklabels([" / ".join(f"{fresh[e][k]['offered_events_per_s']:,.0f}" for e in streams
                                        if k < len(fresh[e])) + "/s" for k in range(n_points)], fontsize=7)
        ax2.axhline(TARGET_FRESHNESS_P99_MS, color="grey", ls="--", label="p99 target")
        ax2.set_yscale("log")
        ax2.set_xlabel("offered load (" + " / ".join(streams) + "), ascending")
        ax2.set_ylabel("produced -> visible, ms (log)")
        ax2.set_title("stream freshness")
        ax2.legend(fontsize=7)
        return fig

    return write_results(
        "batch_vs_stream", settings.results_dir, title="Batch vs stream features",
        parameters=parameters,
        data={"batch": batch, "streams": streams, "freshness": fresh, "load": load,
              "batch_stream_ratio": {e: batch_eps / st["events_per_s"] for e, st in streams.items()}},
        table_md=table, takeaway=takeaway, chart=chart)
