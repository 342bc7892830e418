"""Run the modes side by side, print the table, write ``results/flow.{json,md,png}``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from rich.table import Table

from dataflow_playground.app import stack
from dataflow_playground.app.flow.report import FlowResult
from dataflow_playground.app.flow.runner import FlowContext
from dataflow_playground.app.results import markdown_table, write_results

# Targets from the issue, checked against the same run's figures.
TARGET_PUBSUB_EPS = 20_000.0
TARGET_REST_BATCH_EPS = 10_000.0
TARGET_KAFKA_P99_MS = 50.0
PACED_RATE = 2_000.0
PACED_LABEL = "kafka-paced"  # pub/sub, one group, offered PACED_RATE events/s
COLUMNS = ("mode", "sent", "received", "lost", "duplicated", "rejected", "events/s",
           "p50 ms", "p95 ms", "p99 ms", "CPU s")
FAULT_COLUMNS = ("errors", "retries", "timeouts", "gave up", "outage", "max lag / backlog")


@contextmanager
def kafka_running(ctx: FlowContext) -> Iterator[None]:
    """Start the broker unless it runs (or an external one is set); stop it only if we started it."""
    started = stack.up(ctx.settings, components=[stack.KAFKA], on_event=ctx.say)
    try:
        yield
    finally:
        if started.get("kafka"):
            ctx.say("  kafka: stopping the broker this command started")
            stack.stop(stack.KAFKA, ctx.settings)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def row(r: FlowResult) -> list[Any]:
    return [r.mode, r.sent, r.received, r.lost, r.duplicated, r.rejected, r.events_per_s,
            r.p50_ms, r.p95_ms, r.p99_ms, r.cpu_s]


def fault_row(r: FlowResult) -> list[Any]:
    d = r.detail
    caller = d.get("caller", {})
    errors = caller.get("errors", {})
    outage = d.get("outage", {})
    lag = d.get("max_lag_during_outage", outage.get("backlog_at_restart") if outage else None)
    return [", ".join(f"{k}={v}" for k, v in errors.items()) or "-", caller.get("retries", "-"),
            caller.get("timeouts", "-"), caller.get("gave_up_events", "-"),
            f"{outage.get('down_s', d.get('downtime_s', '-'))}s", lag if lag is not None else "-"]


def print_table(ctx: FlowContext, results: list[FlowResult], title: str) -> None:
    table = Table(title=title)
    faults = [r for r in results if "+" in r.mode]
    for c in COLUMNS + (FAULT_COLUMNS if faults else ()):
        table.add_column(c, justify="left" if c in {"mode", "errors"} else "right", overflow="fold")
    for r in results:
        cells = [_fmt(v) for v in row(r)]
        if faults:
            cells += [_fmt(v) for v in fault_row(r)] if r in faults else [""] * len(FAULT_COLUMNS)
        style = None if r.ok else "red"
        table.add_row(*cells, style=style)
    ctx.console.print(table)


def targets(results: dict[str, FlowResult]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, measured: float | None, target: float, higher_is_better: bool = True) -> None:
        if measured is None:
            return
        ratio = measured / target if higher_is_better else (target / measured if measured else None)
        out[name] = {"target": target, "measured": measured,
                     "ratio": round(ratio, 3) if ratio is not None else None,
                     "met": measured >= target if higher_is_better else measured <= target}

    if (ps := results.get("kafka-pubsub")) is not None:
        add("kafka_pubsub_events_per_s_per_group", ps.events_per_s, TARGET_PUBSUB_EPS)
    if (rest := results.get("rest")) is not None:
        add("rest_batch_events_per_s", rest.events_per_s, TARGET_REST_BATCH_EPS)
        if (rpc := results.get("rpc")) is not None:
            add("rpc_stream_events_per_s_vs_rest_batch", rpc.events_per_s, rest.events_per_s)
    if (paced := results.get(PACED_LABEL)) is not None:
        add(f"kafka_p99_ms_at_{PACED_RATE:.0f}_per_s", paced.p99_ms, TARGET_KAFKA_P99_MS,
            higher_is_better=False)
    return out


def takeaway(results: list[FlowResult]) -> str:
    clean = [r for r in results if "+" not in r.mode and r.events_per_s > 0 and r.p99_ms is not None]
    if not clean:
        return "no mode completed, so there is nothing to compare"
    fast = max(clean, key=lambda r: r.events_per_s)
    slow = min(clean, key=lambda r: r.events_per_s)
    quick = min(clean, key=lambda r: r.p99_ms or 0.0)
    if len(clean) == 1:  # one mode: nothing to rank it against
        parts = [f"{fast.mode} moved {fast.events_per_s:,.0f} events/s with a p99 of {fast.p99_ms:,.1f} ms"]
    else:
        parts = [f"{fast.mode} moved events fastest ({fast.events_per_s:,.0f}/s, "
                 f"{fast.events_per_s / slow.events_per_s:.1f}x {slow.mode})",
                 f"{quick.mode} had the lowest p99 ({quick.p99_ms:,.1f} ms)"]
    if (db := next((r for r in clean if r.mode == "db"), None)) is not None:
        parts.append(f"the DuckDB hand-off (seal every {db.detail.get('roll_ms')} ms, poll every "
                     f"{db.detail.get('poll_ms')} ms) cost a p50 of {db.p50_ms:,.1f} ms")
    parts.append(delivery_sentence(results))
    return "; ".join(parts) + "."


def delivery_sentence(results: list[FlowResult]) -> str:
    """What the delivery figures say, run by run: never 'exactly once' beside a loss or a duplicate."""
    clean = [r for r in results if "+" not in r.mode]
    faults = [r for r in results if "+" in r.mode]
    bad = [r for r in clean if not r.ok]
    fault_bad = [r for r in faults if not r.ok]
    if bad:
        head = "delivery check FAILED for " + ", ".join(
            f"{r.mode} (lost {r.lost:,}, duplicated {r.duplicated:,})" for r in bad)
    elif faults and not fault_bad:
        return "every run, the faulted ones too, delivered every event exactly once"
    elif faults:
        head = "without a fault every mode delivered every event exactly once"
    else:
        return "every mode delivered every event exactly once"
    if not faults:
        return head
    tail = [f"{r.mode} lost {r.lost:,} and duplicated {r.duplicated:,} of {r.sent:,}" for r in fault_bad]
    once = [r.mode for r in faults if r.ok]
    if once:
        tail.append(f"{', '.join(once)} still delivered exactly once")
    return f"{head}; with the consumer down mid-run, " + ", ".join(tail)


def chart(results: list[FlowResult]) -> Callable[[], Figure]:
    shown = [r for r in results if r.events_per_s > 0]

    def draw() -> Figure:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        names = [r.mode for r in shown]
        ax1.barh(names, [r.events_per_s for r in shown], color="#4c72b0")
        ax1.set_xscale("log")
        ax1.set_xlabel("events/s, send -> visible (log)")
        ax1.invert_yaxis()
        lat = [r for r in shown if r.p99_ms is not None]
        y = range(len(lat))
        ax2.barh([i + 0.2 for i in y], [r.p50_ms or 0 for r in lat], height=0.4, label="p50")
        ax2.barh([i - 0.2 for i in y], [r.p99_ms or 0 for r in lat], height=0.4, label="p99")
        ax2.set_yticks(list(y), [r.mode for r in lat])
        ax2.set_xscale("log")
        ax2.set_xlabel("latency ms (log)")
        ax2.invert_yaxis()
        ax2.legend()
        fig.suptitle("Dataflow modes: the same seeded events, producer process -> consumer process")
        return fig

    return draw


def write(ctx: FlowContext, results: list[FlowResult], parameters: dict[str, Any], name: str = "flow",
          title: str = "Dataflow modes compared") -> dict[str, Any]:
    """Write ``results/<name>.{json,md,png}``: ``flow`` for the comparison, ``flow_<mode>`` for one mode."""
    by_mode = {r.mode: r for r in results}
    tg = targets(by_mode)
    clean = [r for r in results if "+" not in r.mode]
    faults = [r for r in results if "+" in r.mode]
    table_md = markdown_table(COLUMNS, [row(r) for r in clean])
    if faults:
        table_md += "\n\nFaults (consumer down mid-run):\n\n" + markdown_table(
            COLUMNS + FAULT_COLUMNS, [row(r) + fault_row(r) for r in faults])
    if tg:
        table_md += "\n\nTargets:\n\n" + markdown_table(
            ("target", "goal", "measured", "ratio", "met"),
            [(k, v["target"], v["measured"], v["ratio"], "yes" if v["met"] else "no")
             for k, v in tg.items()])
    paths = write_results(name, ctx.settings.results_dir, title=title,
                          parameters=parameters,
                          data={"modes": {r.mode: r.to_dict() for r in clean},
                                "faults": {r.mode: r.to_dict() for r in faults}, "targets": tg},
                          table_md=table_md, takeaway=takeaway(results), chart=chart(clean))
    return {"targets": tg, "paths": {k: str(v) for k, v in paths.items()}}
