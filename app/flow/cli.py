"""``playground flow {db,rest,rpc,kafka,compare}``: the dataflow modes from the command line.

Imports of the heavy pieces happen inside the commands so ``playground --help`` stays quick.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer

from dataflow_playground.app.console import console as stdout_console
from dataflow_playground.app.console import stderr_console
from dataflow_playground.core.settings import get_settings

flow_app = typer.Typer(help="Move the same seeded events through each dataflow mode (ch. 3), measured.",
                       no_args_is_help=True)


class Fault(StrEnum):
    none = "none"
    consumer_down = "consumer-down"


Events = Annotated[int, typer.Option("--events", "-n", min=1, max=5_000_000, help="events to move")]
Seed = Annotated[int, typer.Option(min=0, help="generator seed")]
JsonOut = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout, nothing else")]
FaultOpt = Annotated[Fault, typer.Option(help="also run with the consumer killed mid-run")]
Downtime = Annotated[float, typer.Option(min=0.5, max=120.0, help="seconds the consumer stays down")]
Batch = Annotated[int, typer.Option(min=1, max=100_000, help="events per write/request/message batch")]


def _run(steps: list[Callable[[Any], list[Any]]], events: int, seed: int, json_out: bool,
         needs_kafka: bool, parameters: dict[str, Any], result_name: str = "flow",
         title: str = "Dataflow modes compared") -> None:
    from dataflow_playground.app.flow import compare
    from dataflow_playground.app.flow.runner import FlowContext

    out = stderr_console() if json_out else stdout_console
    ctx = FlowContext.create(get_settings(), out, seed=seed)
    results = []
    try:
        if needs_kafka:
            with compare.kafka_running(ctx):
                for step in steps:
                    results += step(ctx)
        else:
            for step in steps:
                results += step(ctx)
    finally:
        ctx.stop_all()
    compare.print_table(ctx, results, f"dataflow modes, {events:,} events (seed {seed})")
    extra = compare.write(ctx, results, {"events": events, "seed": seed, **parameters},
                          name=result_name, title=title)
    for name, t in extra["targets"].items():
        ctx.say(f"  target {name}: measured {t['measured']:,.1f} vs {t['target']:,.1f} "
                f"(ratio {t['ratio']}) {'[green]met' if t['met'] else '[red]not met'}")
    ctx.say(f"  results: {', '.join(extra['paths'].values())}")
    ctx.say(f"  takeaway: {compare.takeaway(results)}")
    ctx.say(f"  run folder (receipts, logs): {ctx.run_dir}")
    if json_out:
        doc = {"modes": {r.mode: r.to_dict() for r in results if "+" not in r.mode and "/" not in r.mode},
               "faults": {r.mode: r.to_dict() for r in results if "+" in r.mode},
               "groups": {r.mode: r.to_dict() for r in results if "/" in r.mode}, **extra}
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
    if any(not r.ok for r in results if "+" not in r.mode):
        raise typer.Exit(1)


def _db_steps(events: int, fault: Fault, downtime: float, batch: int, roll_ms: float,
              poll_ms: float) -> list[Callable[[Any], list[Any]]]:
    from dataflow_playground.app.flow.modes.db import run_db

    steps: list[Callable[[Any], list[Any]]] = [
        lambda ctx: [run_db(ctx, events, batch=batch, roll_ms=roll_ms, poll_ms=poll_ms)]]
    if fault is Fault.consumer_down:
        steps.append(lambda ctx: [run_db(ctx, events, batch=batch, roll_ms=roll_ms, poll_ms=poll_ms,
                                         fault_downtime_s=downtime)])
    return steps


def _service_steps(kind: str, events: int, fault: Fault, downtime: float,
                   batch: int) -> list[Callable[[Any], list[Any]]]:
    from dataflow_playground.app.flow.modes.services import run_service

    steps: list[Callable[[Any], list[Any]]] = [
        lambda ctx: [run_service(ctx, kind, events, batch=batch)]]  # type: ignore[arg-type]
    if fault is Fault.consumer_down:
        steps.append(lambda ctx: [run_service(ctx, kind, events, batch=batch,  # type: ignore[arg-type]
                                              fault_downtime_s=downtime)])
    return steps


def _kafka_steps(events: int, fault: Fault, downtime: float, batch: int,
                 paced: bool = True) -> list[Callable[[Any], list[Any]]]:
    from dataflow_playground.app.flow.compare import PACED_LABEL, PACED_RATE
    from dataflow_playground.app.flow.modes import kafka

    steps: list[Callable[[Any], list[Any]]] = [
        lambda ctx: kafka.run_pubsub(ctx, events, batch=batch),
        lambda ctx: [kafka.run_queue(ctx, events, batch=batch)]]
    if paced:
        paced_n = min(events, int(PACED_RATE * 5))
        steps.append(lambda ctx: kafka.run_pubsub(ctx, paced_n, groups=1, batch=10, rate=PACED_RATE,
                                                  label=PACED_LABEL)[:1])
    if fault is Fault.consumer_down:
        steps.append(lambda ctx: [kafka.run_consumer_down(ctx, events, downtime_s=downtime)])
    return steps


def _single(fault: Fault, downtime: float, batch: int) -> dict[str, Any]:
    """Parameters every single-mode run records (its results go to results/flow_<mode>.*)."""
    return {"fault": fault.value, "downtime_s": downtime, "batch": batch}


@flow_app.command("db")
def flow_db(events: Events = 20_000, seed: Seed = 42, json_out: JsonOut = False,
            fault: FaultOpt = Fault.none, downtime: Downtime = 2.0, batch: Batch = 500,
            roll_ms: Annotated[float, typer.Option(min=1.0, max=60_000.0,
                                                   help="writer seals a segment this often")] = 50.0,
            poll_ms: Annotated[float, typer.Option(min=1.0, max=60_000.0,
                                                   help="reader polls for sealed segments")] = 20.0,
            ) -> None:
    """Through a database: DuckDB segment files handed from a writer to a reader process."""
    _run(_db_steps(events, fault, downtime, batch, roll_ms, poll_ms), events, seed, json_out, False,
         {"roll_ms": roll_ms, "poll_ms": poll_ms, **_single(fault, downtime, batch)}, "flow_db",
         "Dataflow through a database (DuckDB segments)")


@flow_app.command("rest")
def flow_rest(events: Events = 20_000, seed: Seed = 42, json_out: JsonOut = False,
              fault: FaultOpt = Fault.none, downtime: Downtime = 2.0, batch: Batch = 500) -> None:
    """Through a REST service (FastAPI); --batch 1 posts events one by one."""
    _run(_service_steps("rest", events, fault, downtime, batch), events, seed, json_out, False,
         _single(fault, downtime, batch), "flow_rest", "Dataflow through a REST service")


@flow_app.command("rpc")
def flow_rpc(events: Events = 20_000, seed: Seed = 42, json_out: JsonOut = False,
             fault: FaultOpt = Fault.none, downtime: Downtime = 2.0, batch: Batch = 500) -> None:
    """Through a gRPC service: client streaming of batches; --batch 1 uses unary calls."""
    _run(_service_steps("rpc", events, fault, downtime, batch), events, seed, json_out, False,
         _single(fault, downtime, batch), "flow_rpc", "Dataflow through a gRPC service")


@flow_app.command("kafka")
def flow_kafka(events: Events = 20_000, seed: Seed = 42, json_out: JsonOut = False,
               fault: FaultOpt = Fault.none, downtime: Downtime = 3.0, batch: Batch = 500) -> None:
    """Through Kafka: pub/sub (two groups), queue (one group of three), a paced latency run."""
    _run(_kafka_steps(events, fault, downtime, batch), events, seed, json_out, True,
         _single(fault, downtime, batch), "flow_kafka", "Dataflow through Kafka")


@flow_app.command("compare")
def flow_compare(events: Events = 20_000, seed: Seed = 42, json_out: JsonOut = False,
                 fault: FaultOpt = Fault.none, downtime: Downtime = 2.0) -> None:
    """Every mode on the same events; table, targets and results/flow.{json,md,png}."""
    single_n = min(events, 2_000)
    steps = [
        *_db_steps(events, Fault.none, downtime, 500, 50.0, 20.0),
        *_service_steps("rest", events, Fault.none, downtime, 500),
        *_service_steps("rpc", events, Fault.none, downtime, 500),
        *_service_steps("rest", single_n, Fault.none, downtime, 1),
        *_service_steps("rpc", single_n, Fault.none, downtime, 1),
        *_kafka_steps(events, Fault.none, downtime, 500),
    ]
    if fault is Fault.consumer_down:
        from dataflow_playground.app.flow.modes import kafka
        from dataflow_playground.app.flow.modes.db import run_db
        from dataflow_playground.app.flow.modes.services import run_service

        steps += [
            lambda ctx: [run_db(ctx, events, fault_downtime_s=downtime)],
            lambda ctx: [run_service(ctx, "rest", events, fault_downtime_s=downtime)],
            lambda ctx: [run_service(ctx, "rpc", events, fault_downtime_s=downtime)],
            lambda ctx: [kafka.run_consumer_down(ctx, events, downtime_s=max(downtime, 2.0))],
        ]
    _run(steps, events, seed, json_out, True, {"fault": fault.value, "downtime_s": downtime,
                                               "single_call_events": single_n})
