"""The lab's commands: ``playground formats`` and ``playground lab [part]``.

Progress always goes to stderr, so ``playground formats --json`` prints nothing
but the JSON on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dataflow_playground.app.console import console, show_results, stderr_console
from dataflow_playground.core.settings import get_settings

err_console = stderr_console()

lab_app = typer.Typer(help="Formats and storage-engines lab (book ch. 3); results go to results/.",
                      invoke_without_command=True)

Rows = Annotated[int, typer.Option(min=100, max=20_000_000, help="events to generate (at least 100)")]
Seed = Annotated[int, typer.Option(min=0, help="generator seed (same seed, same events)")]
Repeats = Annotated[int, typer.Option(min=1, max=100,
                                      help="minimum timed repeats after a warm-up (median kept)")]
Budget = Annotated[float, typer.Option(
    min=0.01, max=60.0,
    help="seconds each fast operation is repeated for (more: steadier medians, slower run)")]
Json = Annotated[bool, typer.Option("--json", help="print the figures as JSON on stdout")]


def _progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True, disable=not enabled)


def _report(paths: dict[str, Path], out: Console, as_json: bool = False) -> None:
    """The result as its table and takeaway, or (``--json``) the JSON written, on stdout."""
    if as_json:
        doc = json.loads(paths["json"].read_text())
        doc["results"] = {k: str(v) for k, v in paths.items()}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return
    show_results(paths, out)


def formats_command(
    rows: Rows = 100_000, seed: Seed = 42, repeats: Repeats = 3, budget: Budget = 0.3,
    as_json: Json = False,
) -> None:
    """Formats: bytes, write, read (Arrow and Python rows), one column, filter, lookup, fidelity."""
    from dataflow_playground.app.lab.file_formats import FormatsConfig, run_formats, write_formats_results

    cfg = FormatsConfig(rows=rows, seed=seed, repeats=repeats, budget_s=budget)
    with _progress() as progress:
        doc = run_formats(cfg, progress)
    paths = write_formats_results(doc, get_settings().results_dir, cfg)
    if as_json:
        slim = {"rows": doc["rows"], "seed": doc["seed"], "honesty": doc["honesty"],
                "formats": {n: {k: v for k, v in f.items() if k != "repeats_s"}
                            for n, f in doc["formats"].items()},
                "results": {k: str(v) for k, v in paths.items()}}
        sys.stdout.write(json.dumps(slim, indent=2) + "\n")
        for name, h in doc["honesty"].items():
            err_console.print(f"honesty {name}: lab {h['lab_s'] * 1e3:.3f} ms, direct pyarrow "
                              f"{h['direct_pyarrow_s'] * 1e3:.3f} ms (ratio {h['ratio']:.3f})",
                              soft_wrap=True)
    else:
        show_results(paths, console)


@lab_app.command("formats")
def lab_formats(rows: Rows = 100_000, seed: Seed = 42, repeats: Repeats = 3,
                budget: Budget = 0.3,
                as_json: Json = False) -> None:
    """Same as `playground formats`."""
    formats_command(rows=rows, seed=seed, repeats=repeats, budget=budget, as_json=as_json)


@lab_app.command("layout")
def lab_layout(side: Annotated[int, typer.Option(min=2, max=8_000,
                                                 help="matrix side (side x side float64)")] = 3_000,
               rows: Rows = 200_000, seed: Seed = 42, repeats: Repeats = 3, as_json: Json = False) -> None:
    """Row-major vs column-major in memory: numpy C vs F order; Python rows vs columns."""
    from dataflow_playground.app.lab.layout import LayoutConfig, run_layout, write_layout_results

    cfg = LayoutConfig(side=side, rows=rows, seed=seed, repeats=repeats)
    with err_console.status("layout: walking matrices"):
        doc = run_layout(cfg)
    _report(write_layout_results(doc, get_settings().results_dir, cfg), console, as_json)


@lab_app.command("engines")
def lab_engines(rows: Rows = 200_000, seed: Seed = 42, repeats: Repeats = 3,
                inserts: Annotated[int, typer.Option(min=1, max=100_000, help="single-row transactions")
                                   ] = 300,
                as_json: Json = False) -> None:
    """Row store vs column store: SQLite vs DuckDB, OLTP and OLAP queries, ACID shown."""
    from dataflow_playground.app.lab.stores import EnginesConfig, run_engines, write_engines_results

    cfg = EnginesConfig(rows=rows, seed=seed, repeats=repeats, inserts=inserts)
    with _progress() as progress:
        doc = run_engines(cfg, progress)
    _report(write_engines_results(doc, get_settings().results_dir, cfg), console, as_json)


@lab_app.command("models")
def lab_models(rows: Rows = 50_000, seed: Seed = 42, repeats: Repeats = 3,
               hops: Annotated[int, typer.Option(min=1, max=10, help="graph hops from the fraudster")] = 2,
               as_json: Json = False) -> None:
    """Data models: relational, document (nested STRUCTs) and graph (recursive CTE) in DuckDB."""
    from dataflow_playground.app.lab.data_models import ModelsConfig, run_models, write_models_results

    cfg = ModelsConfig(rows=rows, seed=seed, repeats=repeats, hops=hops)
    with err_console.status("models: building and querying"):
        doc = run_models(cfg)
    _report(write_models_results(doc, get_settings().results_dir, cfg), console, as_json)


@lab_app.command("etl")
def lab_etl(events: Rows = 100_000, seed: Seed = 42, repeats: Repeats = 3,
            malformed_rate: Annotated[float, typer.Option(
                min=0.0, max=1.0, help="fraction of broken records")] = 0.01,
            as_json: Json = False) -> None:
    """ETL vs ELT: validate in Python then load, or load raw then transform in SQL."""
    from dataflow_playground.app.lab.etl_vs_elt import EtlConfig, run_etl_vs_elt, write_etl_results

    cfg = EtlConfig(events=events, seed=seed, repeats=repeats, malformed_rate=malformed_rate)
    with err_console.status("etl vs elt: running both pipelines"):
        doc = run_etl_vs_elt(cfg)
    _report(write_etl_results(doc, get_settings().results_dir, cfg), console, as_json)


@lab_app.callback()
def lab_all(ctx: typer.Context) -> None:
    """Without a part name, run every part with its defaults."""
    if ctx.invoked_subcommand is not None:
        return
    parts: list[tuple[str, Callable[..., Any]]] = [
        ("formats", formats_command), ("layout", lab_layout), ("engines", lab_engines),
        ("models", lab_models), ("etl", lab_etl)]
    for name, part in parts:
        err_console.rule(f"lab: {name}")
        part(as_json=False)
