"""Pieces the mode runs share: the producer command line and the outage injector."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dataflow_playground.app.flow.runner import Child, FlowContext, wait_until
from dataflow_playground.consumers import flow as consumer_flow
from dataflow_playground.consumers import kafka_to_duckdb
from dataflow_playground.core import receipts
from dataflow_playground.producers import flow as producer_flow

# The process entry points every mode's harness starts (``python -m MODULE``).
PRODUCER_MODULE = producer_flow.__name__
CONSUMER_MODULE = consumer_flow.__name__
SINK_MODULE = kafka_to_duckdb.__name__

# A fault run paces its producer so the run lasts about this long, leaving room
# for the outage in the middle.
FAULT_RUN_S = 6.0


def start_producer(ctx: FlowContext, mode: str, target: str, events: int, report: Path,
                   batch: int, rate: float | None, *extra: str) -> Child:
    args = ["--mode", mode, "--target", target, "--events", str(events), "--seed", str(ctx.seed),
            "--batch", str(batch), "--report", str(report), *extra]
    if rate:
        args += ["--rate", str(rate)]
    return ctx.spawn(f"{mode}-producer", PRODUCER_MODULE, *args)


@dataclass
class Outage:
    killed_at_receipts: int
    down_s: float  # from the kill until the consumer answered again
    backlog_at_restart: int | None  # sent but not yet received when it came back (if known)


def inject_outage(ctx: FlowContext, folders: list[Path], events: int, producer: Child,
                  kill: Callable[[], None], restart: Callable[[], None], downtime_s: float,
                  at_fraction: float = 0.3, sent_so_far: Callable[[], int] | None = None) -> Outage:
    """Once ``at_fraction`` of the events are received, kill the consumer, wait, restart it."""
    def seen() -> int:
        return sum(receipts.count(f) for f in folders)

    wait_until(lambda: seen() >= events * at_fraction, 120, "the first receipts", [producer])
    at = seen()
    ctx.say(f"  [yellow]fault:[/yellow] consumer killed (SIGKILL) after {at:,} events; "
            f"down for {downtime_s:g}s")
    t0 = time.monotonic()
    kill()
    time.sleep(downtime_s)
    restart()
    down = time.monotonic() - t0
    backlog = max(sent_so_far() - seen(), 0) if sent_so_far else None
    ctx.say(f"  [yellow]fault:[/yellow] consumer back after {down:.1f}s")
    return Outage(killed_at_receipts=at, down_s=round(down, 2), backlog_at_restart=backlog)
