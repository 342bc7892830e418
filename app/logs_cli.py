"""``playground logs COMPONENT [-f]``: the end of a stack component's log, optionally followed."""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated

import typer

from dataflow_playground.app import stack, stack_settings
from dataflow_playground.core.settings import get_settings

MAX_LINES = 100_000


def logs_command(
    component: Annotated[str, typer.Argument(help="kafka, rest, rpc, sink, features-worker, producer, ...")],
    lines: Annotated[int, typer.Option("-n", "--lines", help=f"lines to show (1..{MAX_LINES:,})")] = 40,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="keep printing new lines until Ctrl-C")
                      ] = False,
) -> None:
    """Print the last lines of COMPONENT's log (under <data_dir>/run/logs); -f follows it."""
    if not 1 <= lines <= MAX_LINES:
        raise typer.BadParameter(f"--lines must be between 1 and {MAX_LINES:,}, got {lines}")
    settings = stack_settings.effective(get_settings())
    path = stack.log_file(settings, component)
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.log")) if path.parent.exists() else []
        there = ", ".join(known) or "none (start the stack: playground up)"
        raise typer.BadParameter(f"no log for {component!r} at {path}; logs there: {there}")
    with path.open("r", errors="replace") as f:
        for line in deque(f, maxlen=lines):
            typer.echo(line, nl=False)
        if not follow:
            return
        try:
            while True:
                line = f.readline()
                if line:
                    typer.echo(line, nl=False)
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return
