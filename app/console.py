"""Shared rich console, progress bar factory, and a written result shown in the terminal."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Piped or redirected, rich would fall back to 80 columns and cut wide tables; a file or a
# pipe has no width, so use $COLUMNS when set, else this.
PIPED_WIDTH = 200


def output_width(is_tty: bool | None = None, columns: str | None = None) -> int | None:
    """The console width: the terminal's (None) on a TTY, else $COLUMNS or ``PIPED_WIDTH``."""
    is_tty = sys.stdout.isatty() if is_tty is None else is_tty
    if is_tty:
        return None
    columns = os.environ.get("COLUMNS") if columns is None else columns
    return int(columns) if columns and columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


console = Console(width=output_width())


def stderr_console() -> Console:
    """Progress and notes of a command whose stdout carries JSON; as wide as ``console``."""
    return Console(stderr=True, width=output_width(is_tty=sys.stderr.isatty()))


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)\s*$", re.MULTILINE)


def console_markdown(md: str, results_dir: Path | None = None) -> Markdown:
    """A result's Markdown for the terminal: the chart as its path, not an image placeholder."""
    def chart_line(m: re.Match[str]) -> str:
        where = results_dir / m[1] if results_dir is not None else Path(m[1])
        return f"Chart: `{where}`"

    return Markdown(_IMAGE_LINE.sub(chart_line, md))


def show_results(paths: dict[str, Path], out: Console) -> None:
    """Print a written result (table, takeaway, chart path) and the files written."""
    out.print(console_markdown(paths["md"].read_text(), paths["md"].parent))
    out.print(f"[dim]wrote {', '.join(str(p) for p in paths.values())}[/dim]", soft_wrap=True)
