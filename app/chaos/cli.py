"""``playground chaos``: the fault scenarios, their table, takeaway and results files."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from dataflow_playground.app.console import console, stderr_console
from dataflow_playground.core.settings import get_settings

# The scenarios in suite order (runner.SCENARIOS, which a test keeps equal to this); named here
# so that `playground --help` does not import every scenario's dependencies.
SCENARIO_NAMES = ("sink-kill", "cluster-failover", "broker-restart", "worker-kill", "rest-kill", "poison")


def chaos_command(
    scenario: Annotated[list[str] | None, typer.Option(
        "--scenario", help=f"scenario(s) to run, repeatable or comma-separated: {', '.join(SCENARIO_NAMES)} "
                           "(default: all)")] = None,
    quick: Annotated[bool, typer.Option(help="the short versions (what the tests run): fewer events "
                                             "and kills")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as one JSON object on stdout")
                       ] = False,
) -> None:
    """Faults under load (SIGKILLed sink, brokers, stream worker, REST service; poison records):
    sent, acknowledged, stored, lost, duplicated and recovery time for each. Exit 1 if any failed."""
    from dataflow_playground.app.chaos.runner import parse_scenarios, run_suite, summary_table

    names = parse_scenarios(scenario)
    ui = stderr_console() if as_json else console
    summary = run_suite(get_settings(), names, quick, ui)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        console.print(summary_table(summary))
        console.print(f"[bold]Takeaway:[/bold] {summary['takeaway']}")
        console.print(f"[dim]wrote {', '.join(summary['results'].values())}[/dim]")
    if not all(s["passed"] for s in summary["scenarios"]):
        raise typer.Exit(1)
