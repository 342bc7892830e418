"""``playground features ...``: batch vs stream feature parity, and the definitions."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dataflow_playground.app.backfill import LABEL, BatchEngine
from dataflow_playground.app.console import console, stderr_console
from dataflow_playground.core.settings import STREAM_ENGINES, get_settings
from dataflow_playground.features.stream.registry import stream_engine

# The registered stream engines, plus "both" (every engine, one after the other).
Engine = StrEnum("Engine", {name: name for name in (*STREAM_ENGINES, "both")})  # type: ignore[misc]
DEFAULT_ENGINE = Engine("faust")


features_app = typer.Typer(help="Batch vs stream features from one definition.", no_args_is_help=True)


def _duration_ms(text: str) -> int:
    """'30s', '500ms', '2m', '1h' or a bare number of milliseconds; a bad or negative one is refused."""
    from dataflow_playground.app.train.serving_cli import duration_ms

    return duration_ms(text)


@features_app.command("list")
def list_features(
    as_json: Annotated[bool, typer.Option("--json", help="print the definitions as JSON on stdout")] = False,
) -> None:
    """Show every feature definition (entity, aggregation, window, filter)."""
    from dataflow_playground.features.definitions import FEATURES

    if as_json:
        sys.stdout.write(json.dumps([
            {"name": f.name, "entity": f.entity.name, "aggregation": f.agg.value, "column": f.column,
             "k": f.k, "window_ms": f.window_ms, "filter": f.where.label() if f.where else None,
             "meaning": f.doc} for f in FEATURES], indent=2) + "\n")
        return

    table = Table(title="feature definitions")
    for col in ("name", "entity", "aggregation", "window", "filter", "meaning"):
        table.add_column(col, overflow="fold")
    for f in FEATURES:
        agg = f"{f.agg.value}({f.column or ''})" + (f" k={f.k}" if f.k else "")
        table.add_row(f.name, f.entity.name, agg, f"{f.window_ms / 3_600_000:g} h",
                      f.where.label() if f.where else "-", f.doc)
    console.print(table)


@features_app.command("parity")
def parity(
    events: Annotated[int, typer.Option(min=1, max=10_000_000, help="events to generate")] = 50_000,
    out_of_order: Annotated[float, typer.Option(min=0.0, max=1.0, help="fraction of events delivered late")
                            ] = 0.0,
    max_lateness: Annotated[str, typer.Option(help="how late at most, e.g. 30s")] = "0",
    allowed_lateness: Annotated[str, typer.Option(help="stream's allowed lateness, e.g. 60s")] = "60s",
    rate: Annotated[float, typer.Option(min=0.001, max=1_000_000.0,
                                        help="mean events per second of event time")] = 2.0,
    seed: Annotated[int, typer.Option(min=0)] = 42,
    malformed_rate: Annotated[float, typer.Option(min=0.0, max=1.0,
                                                  help="fraction of records broken (dead-lettered)")] = 0.0,
    engine: Annotated[Engine, typer.Option(help="stream engine; 'both' runs one after the other")
                      ] = DEFAULT_ENGINE,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON report")] = False,
) -> None:
    """Compute features in batch (DuckDB SQL) and stream (a worker over Kafka); compare them."""
    from dataflow_playground.app.parity_run import run_parity

    ui = stderr_console() if as_json else console
    engines = list(STREAM_ENGINES) if engine == "both" else [engine.value]
    docs = []
    for name in engines:
        report = run_parity(get_settings(), events=events, seed=seed, rate=rate,
                            out_of_order=out_of_order, max_lateness_ms=_duration_ms(max_lateness),
                            allowed_lateness_ms=_duration_ms(allowed_lateness),
                            malformed_rate=malformed_rate, ui=ui, engine=name)
        doc = report.to_json()
        docs.append(doc)
        if not as_json:
            _print_report(doc, report, stream_engine(name).path)
    from dataflow_playground.app.parity_results import write_parity_results

    paths = write_parity_results(docs, get_settings().results_dir)
    ui.print(f"[dim]wrote {', '.join(str(p) for p in paths.values())}[/dim]", soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2) + "\n")
    if any(d["final_state_mismatches"] for d in docs):
        raise typer.Exit(1)


def _print_report(doc: dict[str, Any], report: Any, stream_path: str) -> None:
    table = Table(title=f"per-event parity, {doc['events']:,} events (batch = reference)")
    for col in ("feature", "mismatch", "missing", "extra", "SMAPE", "final-state mismatches"):
        table.add_column(col, justify="right" if col != "feature" else "left", overflow="fold")
    for name, m in doc["features"].items():
        fs = doc["final_state"][name]
        table.add_row(name, f"{m['mismatch_rate']:.4%}", f"{m['missing_rate']:.4%}",
                      f"{m['extra_rate']:.4%}", f"{m['smape']:.2e}", f"{fs['mismatches']} / {fs['entities']}")
    console.print(table)
    c = doc["stream_counters"]
    console.print(f"stream path: {stream_path}")
    console.print(f"lateness policy: allowed {c.get('allowed_lateness_ms', 0) / 1000:g}s; late events "
                  f"accepted {c.get('late_accepted', 0)}, dropped {c.get('late_dropped', 0)}, max lateness "
                  f"{c.get('max_lateness_ms', 0) / 1000:.1f}s; "
                  f"corrections emitted {c.get('corrections', 0)}; "
                  f"dead-lettered {c.get('dead_lettered', 0)} "
                  f"({doc.get('dead_letter_records', 0)} records on the dead-letter topic)")
    for name, p in report.per_event.items():
        if p.examples:
            console.print(f"  {name}: e.g. {p.examples[:2]}")
    bad = doc["final_state_mismatches"]
    console.print("[green]final online state == batch snapshot (0 mismatches)" if not bad else
                   f"[red]final online state differs from the batch snapshot in {bad} values")


@features_app.command("backfill")
def backfill(
    out: Annotated[Path, typer.Option(help="the Parquet file to write (one row per event_id)")],
    engine: Annotated[BatchEngine, typer.Option(help="batch engine: duckdb here, or spark")
                      ] = BatchEngine.DUCKDB,
    master: Annotated[str | None, typer.Option(
        help="Spark master: local[N] or spark://HOST:7077 (default local[2])")] = None,
    driver_memory: Annotated[str | None, typer.Option(help="Spark driver heap, e.g. 2g (the default)")
                             ] = None,
    executor_memory: Annotated[str | None, typer.Option(
        help="Spark heap per executor on a cluster, e.g. 4g (default 512m)")] = None,
    driver_host: Annotated[str | None, typer.Option(
        help="address a remote cluster's executors reach this machine on (default 127.0.0.1)")] = None,
    # Checked by BackfillConfig (one-line error naming --events), not by typer's usage box.
    events: Annotated[int | None, typer.Option(help="generate this many events ...")] = None,
    seed: Annotated[int, typer.Option(min=0, help="... with this seed")] = 42,
    rate: Annotated[float, typer.Option(min=0.001, max=1_000_000.0,
                                        help="... at this mean rate (events per second of event time)")
                    ] = 2.0,
    input_path: Annotated[Path | None, typer.Option(
        "--input", help="... or read the events from this Parquet file (the event schema)")] = None,
) -> None:
    """Write the point-in-time-correct training set: the label and every feature, per event."""
    from dataflow_playground.app.backfill import BackfillConfig, run_backfill
    from dataflow_playground.features.definitions import FEATURES

    cfg = BackfillConfig(out=out, engine=engine, events=events, seed=seed, rate=rate,
                         input=input_path, master=master, driver_memory=driver_memory,
                         executor_memory=executor_memory, driver_host=driver_host)
    with console.status("backfill") as status:
        result = run_backfill(cfg, on_stage=lambda stage: status.update(stage))
    where = f" on {result.master}" if result.master else ""
    startup = f", Spark start-up {result.startup_s:.1f} s" if result.master else ""
    console.print(f"wrote {result.out}: {result.rows:,} rows (event_id, label {LABEL}, "
                  f"{len(FEATURES)} features) with {result.engine}{where}; features "
                  f"{result.compute_s:.1f} s{startup}, total {result.total_s:.1f} s",
                  highlight=False, soft_wrap=True)
