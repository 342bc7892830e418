"""``playground metrics``: where the running processes serve /metrics, for Prometheus to scrape."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dataflow_playground.app.console import console
from dataflow_playground.core.metrics import metrics_targets, write_file_sd
from dataflow_playground.core.settings import get_settings

metrics_app = typer.Typer(help="The processes' Prometheus endpoints (/metrics).", no_args_is_help=True)


@metrics_app.command("targets")
def targets() -> None:
    """List each live process and the URL of its /metrics."""
    found = metrics_targets(get_settings())
    if not found:
        console.print("no process serves metrics; start the stack with 'playground up'")
        raise typer.Exit(1)
    table = Table(title="metrics endpoints")
    table.add_column("component")
    table.add_column("url")
    for component, url in found.items():
        table.add_row(component, url)
    console.print(table)


@metrics_app.command("file-sd")
def file_sd(
    out: Annotated[Path | None, typer.Option(help="default: <data_dir>/run/prometheus/targets.json")] = None,
) -> None:
    """Write the live endpoints as a Prometheus file_sd targets file (README: "Metrics").

    Run it again after `up` or `down`: Prometheus re-reads the file when it changes.
    """
    path, found = write_file_sd(get_settings(), out)
    console.print(f"wrote {len(found)} target(s) to {path}: {', '.join(found) or 'none running'}",
                  highlight=False, soft_wrap=True)
