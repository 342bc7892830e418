"""``playground bench batch``: the batch engines' cost curve (DuckDB and Spark, by input size).

For each size the events are generated once and written to Parquet; every engine then runs
the same ``playground features backfill`` (:mod:`..backfill`) from that file to a training
Parquet, each run in a fresh child process, so that:

- the peak RSS is the whole process tree's (the Spark driver's JVM is a child of the Python
  process), sampled every 50 ms;
- Spark's start-up (session and JVM) is paid in every run, as a user pays it: it is
  reported apart (``startup_s``) and inside the seconds to the first result.

``events_per_s`` is events over the compute time (reading the input, the features, collecting
the result), start-up and writing excluded. Medians of ``repeats`` per engine and size; the
peak RSS is the largest of the repeats. The load average before and after is recorded.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from rich.console import Console

from dataflow_playground.app.backfill import BackfillConfig, BatchEngine, run_backfill
from dataflow_playground.app.results import markdown_table, median, write_results
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, generate_table

SAMPLE_S = 0.05
MAX_EVENTS = 50_000_000


class BatchBenchError(PlaygroundError):
    """Bad options for ``bench batch``."""


@dataclass(frozen=True)
class BatchBenchConfig:
    sizes: tuple[int, ...] = (100_000, 1_000_000, 10_000_000)
    engines: tuple[BatchEngine, ...] = (BatchEngine.DUCKDB, BatchEngine.SPARK)
    repeats: int = 3
    master: str = "local[2]"
    seed: int = 42
    timeout_s: float = 3600.0  # per run


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())
    except ValueError as err:
        raise BatchBenchError(f"--events takes comma-separated whole numbers, got {text!r}") from err
    if not sizes or any(not 1 <= n <= MAX_EVENTS for n in sizes):
        raise BatchBenchError(f"--events: each size between 1 and {MAX_EVENTS:,}, got {text!r}")
    return tuple(sorted(set(sizes)))


def parse_engines(text: str) -> tuple[BatchEngine, ...]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    known = [e.value for e in BatchEngine]
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise BatchBenchError(f"--engine: one or more of {', '.join(known)}, got {text!r}")
    return tuple(BatchEngine(n) for n in dict.fromkeys(names))


def _child(engine: str, source: str, out: str, master: str) -> int:
    """Run inside the measured child: one backfill, its timings as JSON on stdout."""
    cfg = BackfillConfig(out=Path(out), engine=BatchEngine(engine), input=Path(source),
                         master=master if engine == BatchEngine.SPARK else None)
    r = run_backfill(cfg)
    sys.stdout.write(json.dumps({"rows": r.rows, "startup_s": r.startup_s, "compute_s": r.compute_s,
                                 "total_s": r.total_s}) + "\n")
    return 0


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # gone between listing and reading
            continue
    return total


def measure_run(engine: BatchEngine, source: Path, out: Path, master: str, timeout_s: float
                ) -> dict[str, Any]:
    """One backfill in a child process; its timings and the tree's peak RSS."""
    cmd = [sys.executable, "-m", "dataflow_playground.app.bench.batch", "--child", engine.value,
           str(source), str(out), master]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    peak = 0
    try:
        while child.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, _tree_rss(proc))
            if time.perf_counter() - started > timeout_s:
                raise BatchBenchError(f"{engine} on {source.name} did not finish within {timeout_s:.0f}s")
            time.sleep(SAMPLE_S)
        stdout, stderr = child.communicate()
    finally:
        if child.poll() is None:  # ours, by PID: the child and what it started
            for p in [*proc.children(recursive=True), proc]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            child.wait(30)
    if child.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise BatchBenchError(f"{engine} backfill failed (exit {child.returncode}):\n{tail}")
    timings = json.loads(stdout.strip().splitlines()[-1])
    return {**timings, "peak_rss_mb": peak / 2**20, "wall_s": time.perf_counter() - started}


def _entry(engine: BatchEngine, events: int, runs: list[dict[str, Any]], master: str) -> dict[str, Any]:
    compute = median([r["compute_s"] for r in runs])
    startup = median([r["startup_s"] for r in runs])
    return {
        "engine": engine.value, "events": events, "master": master if engine == BatchEngine.SPARK else None,
        "events_per_s": events / compute if compute > 0 else math.inf,
        "compute_s": compute, "startup_s": startup, "first_result_s": startup + compute,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "repeats": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


def _slope(entries: list[dict[str, Any]]) -> float | None:
    """Growth of the compute time per 10x events, from the two largest sizes (1.0 = linear)."""
    if len(entries) < 2:
        return None
    a, b = entries[-2], entries[-1]
    return float((b["compute_s"] / a["compute_s"]) ** (1 / math.log10(b["events"] / a["events"])) / 10)


def takeaway(entries: list[dict[str, Any]], memory_mb: float) -> str:
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_engine.setdefault(e["engine"], []).append(e)
    parts = []
    largest = max(e["events"] for e in entries)
    at_largest = {name: next(e for e in runs if e["events"] == largest) for name, runs in by_engine.items()
                  if any(e["events"] == largest for e in runs)}
    if len(at_largest) == 2:
        fast, slow = sorted(at_largest.values(), key=lambda e: e["first_result_s"])
        ratio = slow["first_result_s"] / fast["first_result_s"]
        parts.append(f"At {largest:,} events {fast['engine']} gives the first result in "
                     f"{fast['first_result_s']:.1f} s, {ratio:.1f}x sooner than {slow['engine']} "
                     f"({slow['first_result_s']:.1f} s, of which "
                     f"{slow['startup_s']:.1f} s start-up).")
    for name, runs in by_engine.items():
        last = runs[-1]
        slope = _slope(runs)
        if slope is None:
            parts.append(f"{name}: {last['events_per_s']:,.0f} events/s at {last['events']:,} events.")
            continue
        rss_10x = last["peak_rss_mb"] * 10
        fits = "fits in" if rss_10x < memory_mb else "exceeds"
        parts.append(
            f"{name}: {last['events_per_s']:,.0f} events/s at {last['events']:,} events; from "
            f"{runs[-2]['events']:,} to {last['events']:,} its compute time grew {slope * 10:.1f}x per 10x "
            f"events, so 10x more ({last['events'] * 10:,}) would take about "
            f"{last['compute_s'] * slope * 10:,.0f} s, and at {last['peak_rss_mb']:,.0f} MB now its memory "
            f"would grow to about {rss_10x:,.0f} MB if it scales with the input, which {fits} this "
            f"machine's {memory_mb:,.0f} MB.")
    return " ".join(parts)


def summary_table(entries: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["engine", "events", "events/s", "compute s", "start-up s", "first result s", "peak RSS MB"],
        [[e["engine"], e["events"], e["events_per_s"], e["compute_s"], e["startup_s"], e["first_result_s"],
          e["peak_rss_mb"]] for e in entries])


def _chart(entries: list[dict[str, Any]]) -> Figure:
    fig = Figure(figsize=(12, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    for name in dict.fromkeys(e["engine"] for e in entries):
        runs = [e for e in entries if e["engine"] == name]
        xs = [e["events"] for e in runs]
        ax1.plot(xs, [e["first_result_s"] for e in runs], marker="o", label=f"{name}: first result")
        ax1.plot(xs, [e["compute_s"] for e in runs], marker=".", ls="--", label=f"{name}: compute")
        ax2.plot(xs, [e["peak_rss_mb"] for e in runs], marker="o", label=name)
    for ax, title, unit in ((ax1, "Seconds by input size", "seconds"),
                            (ax2, "Peak RSS (process tree) by input size", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return fig


def run_bench(settings: Settings, cfg: BatchBenchConfig, ui: Console) -> dict[str, Any]:
    load_before = os.getloadavg()
    entries: list[dict[str, Any]] = []
    total = len(cfg.sizes) * len(cfg.engines) * cfg.repeats
    done = 0
    with tempfile.TemporaryDirectory(prefix="bench-batch-", dir=settings.data_dir if
                                     settings.data_dir.exists() else None) as tmp:
        work = Path(tmp)
        for events in cfg.sizes:
            source = work / f"events-{events}.parquet"
            with ui.status(f"generating {events:,} events"):
                table = generate_table(GeneratorConfig(events=events, seed=cfg.seed, rate=2.0))
                pq.write_table(table, source)
                del table
            for engine in cfg.engines:
                runs = []
                for i in range(cfg.repeats):
                    done += 1
                    with ui.status(f"[{done}/{total}] {engine} backfill, {events:,} events, run {i + 1}"):
                        runs.append(measure_run(engine, source, work / "training.parquet", cfg.master,
                                                cfg.timeout_s))
                entry = _entry(engine, events, runs, cfg.master)
                entries.append(entry)
                ui.print(f"{engine} {events:,} events: {entry['events_per_s']:,.0f} events/s, first result "
                         f"{entry['first_result_s']:.2f} s, peak RSS {entry['peak_rss_mb']:,.0f} MB")
            source.unlink()
    entries.sort(key=lambda e: (e["engine"], e["events"]))
    memory_mb = psutil.virtual_memory().total / 2**20
    text = takeaway(entries, memory_mb)
    load = {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()}
    table = summary_table(entries) + (
        f"\n\nMedians of {cfg.repeats} runs; Spark on {cfg.master}. Load average (1/5/15 min) before "
        f"{tuple(round(x, 2) for x in load_before)}, after "
        f"{tuple(round(x, 2) for x in load['loadavg_1_5_15_after'])}.")
    params = {"events": list(cfg.sizes), "engines": [e.value for e in cfg.engines], "repeats": cfg.repeats,
              "master": cfg.master, "seed": cfg.seed}
    paths = write_results("batch", settings.results_dir, title="Batch engines: cost by input size",
                          parameters=params, data={"runs": entries, **load}, table_md=table,
                          takeaway=text, chart=lambda: _chart(entries))
    return {"runs": entries, "takeaway": text, **load, "results": {k: str(v) for k, v in paths.items()}}


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        sys.exit(_child(*sys.argv[2:6]))
    sys.exit("usage: playground bench batch (this module's --child mode is its measured child)")
