"""``playground demo``: the whole tour in a few minutes, one line per lesson at the end.

It starts the stack, moves seeded events Kafka -> DuckDB, then runs short versions of the
dataflow-modes comparison, batch-vs-stream feature parity and the formats lab, each as the
same ``playground ... --json`` command a user would type (their progress shows on stderr,
their figures come back as JSON). Every step writes its results; the report
(``results/index.html``) gathers them. Everything the tour started is stopped at the end,
unless ``keep`` is set: then the stack stays up with a continuous producer (and the
dashboard), and their URLs are printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataflow_playground.app import stack
from dataflow_playground.app.console import console
from dataflow_playground.app.demo import run_demo
from dataflow_playground.app.report_page import build_index
from dataflow_playground.app.stack_report import print_urls
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings, child_env


class TourError(PlaygroundError):
    """A step of the tour failed; the message names the step and how to rerun it alone."""


@dataclass(frozen=True)
class TourSizes:
    """How much each lesson moves; the defaults keep the tour under 5 minutes on 2 cores."""

    events: int = 20_000          # Kafka -> DuckDB
    flow_events: int = 5_000      # each dataflow mode
    parity_events: int = 5_000    # batch vs stream features
    format_rows: int = 20_000     # the formats lab


@dataclass
class Lesson:
    topic: str
    command: str
    line: str
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)


def _child(settings: Settings, args: list[str]) -> dict[str, Any]:
    """Run ``playground ARGS --json``; its progress goes to our stderr, its JSON comes back."""
    cmd = [sys.executable, "-m", "dataflow_playground.app.cli", *args, "--json"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                          env=child_env(settings), check=False)
    if proc.returncode != 0:
        raise TourError(f"`playground {' '.join(args)}` failed with exit code {proc.returncode}; "
                        f"run it alone to see why (its output is above).")
    try:
        doc = json.loads(proc.stdout)
    except ValueError as err:
        raise TourError(f"`playground {' '.join(args)} --json` printed no JSON object: "
                        f"{proc.stdout[-300:]!r}") from err
    return doc[0] if isinstance(doc, list) else doc


def kafka_line(summary: dict[str, Any]) -> str:
    balanced = (summary["rows_stored"] + summary["dead_letters"] + summary["duplicates"]
                == summary["events_sent"])
    return (f"{summary['events_sent']:,} events through Kafka into DuckDB at "
            f"{summary['consume_events_per_s']:,.0f} events/s: {summary['rows_stored']:,} stored, "
            f"{summary['dead_letters']:,} dead-lettered, {summary['duplicate_rows']:,} duplicate rows "
            f"({'every event accounted for' if balanced else 'NOT balanced'})")


def flow_line(doc: dict[str, Any]) -> str:
    modes = doc["modes"]
    names = {"db": "database", "rest": "REST", "rpc": "gRPC", "kafka-pubsub": "Kafka"}
    rates = [f"{label} {modes[key]['events_per_s']:,.0f}" for key, label in names.items() if key in modes]
    bad = [m for m, r in modes.items() if r.get("lost") or r.get("duplicated")]
    tail = ("every mode delivered each event once" if not bad
            else f"lost or doubled events in: {', '.join(bad)}")
    return f"events/s by mode: {', '.join(rates)}; {tail}"


def parity_line(doc: dict[str, Any]) -> str:
    worst = max(doc["features"].items(), key=lambda kv: kv[1]["mismatch_rate"])
    return (f"{len(doc['features'])} features on {doc['events']:,} events, batch SQL vs the "
            f"{doc['engine']} stream: {doc['final_state_mismatches']:,} final-state mismatches, "
            f"highest per-event mismatch rate {worst[1]['mismatch_rate']:.2%} ({worst[0]})")


def formats_line(doc: dict[str, Any]) -> str:
    fmts = doc["formats"]
    smallest = min(fmts, key=lambda n: fmts[n]["bytes"])
    col = min(fmts, key=lambda n: fmts[n]["read_column_s"])
    csv = fmts.get("csv")
    ratio = f", {csv['bytes'] / fmts[smallest]['bytes']:.1f}x smaller than CSV" if csv else ""
    losses = [n for n, f in fmts.items() if not f.get("roundtrip_ok", True)]
    return (f"{doc['rows']:,} rows: smallest file {smallest}{ratio}; fastest one-column read {col} "
            f"({fmts[col]['read_column_s'] * 1e3:,.1f} ms); round-trip losses in "
            f"{len(losses)} of {len(fmts)} formats")


def run_tour(settings: Settings, sizes: TourSizes, seed: int = 42, keep: bool = False,
             malformed_rate: float = 0.005) -> list[Lesson]:
    """Run every lesson; stop what was started unless ``keep``; return the lessons."""
    t_start = time.perf_counter()
    started = stack.up(settings, on_event=lambda m: console.print(f"  {m}"))
    lessons: list[Lesson] = []

    def step(n: int, topic: str, command: str, fn: Callable[[], tuple[str, dict[str, Any]]]) -> None:
        console.rule(f"[bold]{n}/4 {topic}[/bold]: {command}")
        t0 = time.perf_counter()
        line, figures = fn()
        lessons.append(Lesson(topic, command, line, time.perf_counter() - t0, figures))

    try:
        def kafka_step() -> tuple[str, dict[str, Any]]:
            summary = run_demo(settings, events=sizes.events, malformed_rate=malformed_rate,
                               seed=seed, keep_running=True)
            return kafka_line(summary), summary

        def flow_step() -> tuple[str, dict[str, Any]]:
            doc = _child(settings, ["flow", "compare", "--events", str(sizes.flow_events),
                                    "--seed", str(seed)])
            return flow_line(doc), doc

        def parity_step() -> tuple[str, dict[str, Any]]:
            doc = _child(settings, ["features", "parity", "--events", str(sizes.parity_events),
                                    "--seed", str(seed), "--engine", settings.stream_engine])
            return parity_line(doc), doc

        def formats_step() -> tuple[str, dict[str, Any]]:
            doc = _child(settings, ["formats", "--rows", str(sizes.format_rows), "--repeats", "1",
                                    "--seed", str(seed)])
            return formats_line(doc), doc

        step(1, "Kafka -> DuckDB", f"playground demo --events {sizes.events}", kafka_step)
        step(2, "Dataflow modes", f"playground flow compare --events {sizes.flow_events}", flow_step)
        step(3, "Batch vs stream features",
             f"playground features parity --events {sizes.parity_events}", parity_step)
        step(4, "Formats", f"playground formats --rows {sizes.format_rows}", formats_step)
    finally:
        if not keep and any(started.values()):
            stack.down(settings, on_event=lambda m: console.print(f"  {m}"))
    console.rule("[bold]what the tour showed[/bold]")
    for lesson in lessons:
        console.print(f"[bold]{lesson.topic}[/bold] ({lesson.seconds:,.0f} s): {lesson.line}",
                      highlight=False, soft_wrap=True)
    report = build_index(settings.results_dir)
    if keep:
        console.rule("[bold]left running (--keep)[/bold]")
        stack.up(settings, on_event=lambda m: console.print(f"  {m}"), with_producer=True)
        print_urls(settings)
        console.print("  a producer sends seeded events to "
                      f"'{settings.topic}' at {settings.producer_rate:g}/s; 'playground down' stops it all",
                      highlight=False)
    console.print(f"tour took {time.perf_counter() - t_start:,.0f} s; the report: {report.resolve()}",
                  highlight=False, soft_wrap=True)
    return lessons
