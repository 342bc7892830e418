"""Run the chaos scenarios one after another and write ``results/chaos.{json,md,png}``.

Each scenario is bounded (every wait has a timeout) and stops what it started, also when
interrupted: SIGTERM is turned into ``KeyboardInterrupt`` for the run, so both signals
leave through the scenarios' ``with ChaosEnv(...)`` blocks.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from dataflow_playground.app.chaos import (
    broker_restart,
    cluster_failover,
    poison,
    rest_kill,
    sink_kill,
    worker_kill,
)
from dataflow_playground.app.chaos.accounting import Outcome, failed, recovery_summary, takeaway
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings

Run = Callable[[Settings, bool, Callable[[str], None]], Outcome]


@dataclass(frozen=True)
class Scenario:
    name: str
    condition: str
    run: Run
    fault: str


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(sink_kill.NAME, sink_kill.CONDITION, sink_kill.run,
             "Kafka -> DuckDB sink SIGKILLed 10x during 1,000,000 events"),
    Scenario(cluster_failover.NAME, cluster_failover.CONDITION, cluster_failover.run,
             "1 of 3 brokers SIGKILLed during produce (acks=all), then restarted"),
    Scenario(broker_restart.NAME, broker_restart.CONDITION, broker_restart.run,
             "the only broker SIGKILLed mid-run and restarted"),
    Scenario(worker_kill.NAME, worker_kill.CONDITION, worker_kill.run,
             "stream worker SIGKILLed 5x during 1,000,000 events"),
    Scenario(rest_kill.NAME, rest_kill.CONDITION, rest_kill.run,
             "REST ingest, 8 clients for 60 s, service SIGKILLed once"),
    Scenario(poison.NAME, poison.CONDITION, poison.run,
             "poison records of every kind in every codec from confluent-kafka"),
)}


class UnknownScenarioError(PlaygroundError):
    """A scenario name that does not exist."""


def parse_scenarios(values: list[str] | None) -> list[str]:
    """Names from repeated and/or comma-separated options, in suite order; all when none."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise UnknownScenarioError(f"unknown chaos scenario(s) {', '.join(unknown)}; choose from "
                                   f"{', '.join(SCENARIOS)}")
    return [n for n in SCENARIOS if not names or n in names]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_suite(settings: Settings, names: list[str], quick: bool, ui: Console) -> dict[str, Any]:
    """Run ``names``; write the results; return the summary (also what ``--json`` prints)."""
    outcomes: list[Outcome] = []
    with sigterm_as_interrupt():
        for i, name in enumerate(names, 1):
            sc = SCENARIOS[name]
            t0 = time.monotonic()
            with ui.status(f"[{i}/{len(names)}] {name}") as status:
                def say(msg: str, _name: str = name, _i: int = i) -> None:
                    status.update(f"[{_i}/{len(names)}] {_name}: {msg}")
                    ui.print(f"  [dim]{time.strftime('%H:%M:%S')}[/dim] {_name}: {msg}", highlight=False)
                try:
                    outcome = sc.run(settings, quick, say)
                except KeyboardInterrupt:
                    ui.print(f"[yellow]{name}: interrupted; everything it started was stopped")
                    raise
                except Exception as err:  # one scenario failing must not hide the others' figures
                    outcome = failed(name, sc.condition, err, 0.0)
            outcome.elapsed_s = round(time.monotonic() - t0, 1)
            outcomes.append(outcome)
            mark = "[green]passed" if outcome.passed else "[red]FAILED"
            ui.print(f"{mark}[/] {name}: sent {outcome.sent:,}, acknowledged {outcome.acknowledged:,}, "
                     f"stored {outcome.stored:,}, lost {outcome.lost:,}, duplicated {outcome.duplicated:,}, "
                     f"recovery {recovery_summary(outcome.recovery_s)}", highlight=False)
    summary: dict[str, Any] = {"scenarios": [o.to_json() for o in outcomes], "takeaway": takeaway(outcomes),
               "quick": quick}
    paths = write_results(
        "chaos", settings.results_dir, title="Chaos: faults under load, with loss accounting",
        parameters={"scenarios": names, "quick": quick},
        data={"scenarios": summary["scenarios"]}, table_md=markdown_table(HEADERS, rows(outcomes)),
        takeaway=summary["takeaway"], chart=lambda: chart(outcomes))
    summary["results"] = {k: str(p) for k, p in paths.items()}
    return summary


HEADERS = ("scenario", "passed", "sent", "acknowledged", "unacknowledged", "stored", "dead-lettered",
           "lost", "duplicated", "recovery", "condition")


def rows(outcomes: list[Outcome]) -> list[list[Any]]:
    return [[o.scenario, "yes" if o.passed else "NO", o.sent, o.acknowledged, o.unacknowledged,
             o.stored, o.dead_lettered, o.lost, o.duplicated, recovery_summary(o.recovery_s),
             o.condition] for o in outcomes]


def summary_table(summary: dict[str, Any]) -> Table:
    outcomes = [Outcome(**{k: v for k, v in s.items() if k not in ("passed", "balance_errors")})
                for s in summary["scenarios"]]
    table = Table(title="playground chaos" + (" (quick)" if summary.get("quick") else ""))
    for h in HEADERS[:-1]:
        table.add_column(h, justify="left" if h in ("scenario", "recovery") else "right")
    for row in rows(outcomes):
        cells = [f"{v:,}" if isinstance(v, int) else str(v) for v in row[:-1]]
        cells[1] = "[green]yes" if row[1] == "yes" else "[red]NO"
        table.add_row(*cells)
    return table


def chart(outcomes: list[Outcome]) -> Any:
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [o.scenario for o in outcomes]
    ax1.bar(names, [o.lost for o in outcomes], label="lost")
    ax1.bar(names, [o.duplicated for o in outcomes], bottom=[o.lost for o in outcomes], label="duplicated")
    ax1.set_title("acknowledged events lost / stored twice")
    worst = max((o.lost + o.duplicated for o in outcomes), default=0)
    ax1.set_ylim(0, max(worst, 1) * 1.3)  # all zeros is the good case: keep it visible, not squashed
    for i, o in enumerate(outcomes):
        ax1.annotate(f"{o.lost + o.duplicated:,} of\n{o.acknowledged:,}", (i, o.lost + o.duplicated),
                     ha="center", va="bottom", fontsize=8)
    ax1.legend()
    for i, o in enumerate(outcomes):
        ax2.scatter([i] * len(o.recovery_s), o.recovery_s)
    ax2.set_xticks(range(len(names)), names)
    ax2.set_ylabel("seconds")
    ax2.set_title("recovery time per fault")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=30)
    return fig
