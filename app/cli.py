"""The ``playground`` command: stack control, the demo, benchmarks and the labs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from dataflow_playground.app import stack, stack_settings
from dataflow_playground.app.chaos.cli import chaos_command
from dataflow_playground.app.console import console, stderr_console
from dataflow_playground.app.features_cli import features_app
from dataflow_playground.app.flow.cli import flow_app
from dataflow_playground.app.lab.cli import formats_command, lab_app
from dataflow_playground.app.logs_cli import logs_command
from dataflow_playground.app.metrics_cli import metrics_app
from dataflow_playground.app.produce_cli import produce_command
from dataflow_playground.app.report_cli import report_command
from dataflow_playground.app.stack_report import (
    print_accounting,
    print_brokers,
    print_crashed,
    print_urls,
    purge_data,
)
from dataflow_playground.app.topics_cli import topics_app
from dataflow_playground.app.train.cli import train_app
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import STREAM_ENGINES, Settings, get_settings

app = typer.Typer(help="dataflow-playground: Kafka, DuckDB and services, measured.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
bench_app = typer.Typer(help="Benchmarks (minutes each); results go to results/.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
serve_app = typer.Typer(help="Run one service in the foreground (what `up` and compose start).",
                        no_args_is_help=True)
app.add_typer(serve_app, name="serve")
app.add_typer(lab_app, name="lab")
app.add_typer(flow_app, name="flow")
app.command("formats")(formats_command)
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
app.add_typer(metrics_app, name="metrics")
app.command("produce")(produce_command)
app.add_typer(topics_app, name="topics")
app.command("logs")(logs_command)
app.command("report")(report_command)
app.command("chaos")(chaos_command)


@app.command("fetch-kafka")
def fetch_kafka() -> None:
    """Fetch Kafka's jars from Maven Central into the cache folder (once)."""
    from dataflow_playground.core.kafka_native import ensure_kafka

    settings = get_settings()
    with console.status(f"fetching Kafka {settings.kafka_version} with Maven"):
        libs = ensure_kafka(settings)
    console.print(f"Kafka {settings.kafka_version}: {libs}")


@serve_app.command("rest")
def serve_rest(port: Annotated[int | None, typer.Option(min=1, max=65_535, help="default: rest_port")
                              ] = None) -> None:
    """The FastAPI service (OpenAPI at /docs)."""
    import uvicorn

    from dataflow_playground.core.metrics import register_target

    settings = get_settings()
    register_target(settings, "rest", f"http://{settings.host}:{port or settings.rest_port}/metrics")
    uvicorn.run("dataflow_playground.services.rest.app:create_app", factory=True, host=settings.bind_host,
                port=port or settings.rest_port, log_level="warning")


@serve_app.command("dashboard")
def serve_dashboard(port: Annotated[int | None, typer.Option(min=1, max=65_535,
                                                             help="default: dashboard_port (8080)")] = None
                    ) -> None:
    """The live dashboard: components, topics and lag, rates, feature lookup, results."""
    from dataflow_playground.app.dashboard import serve

    serve(stack_settings.effective(get_settings()), port=port)


@serve_app.command("sink")
def serve_sink(
    group: Annotated[str, typer.Option()] = "duckdb-sink",
    idle_timeout: Annotated[float, typer.Option(min=0.0, max=86_400.0,
                                                help="seconds without data before exiting; 0 = never")] = 0,
) -> None:
    """The Kafka -> DuckDB sink, consuming until stopped."""
    from dataflow_playground.consumers.kafka_to_duckdb import main as sink_main

    raise typer.Exit(sink_main(["--group", group, "--idle-timeout", str(idle_timeout)]))


@app.command()
def up(
    stream_workers: Annotated[int | None, typer.Option(
        "--stream-workers", min=1, max=stack.MAX_STREAM_WORKERS,
        help="run this many stream workers in one consumer group (default: keep what runs, "
             "at least 1); fewer than before stops the extra ones and their partitions move")] = None,
    with_producer: Annotated[bool, typer.Option(
        help="also run a producer sending seeded events to the topic until `down`")] = False,
    producer_rate: Annotated[float | None, typer.Option(
        min=0.1, max=100_000, help="the producer's events/s (default: settings.producer_rate)")] = None,
    brokers: Annotated[int | None, typer.Option(
        help="Kafka nodes: 1, or 3 for a native cluster of combined broker+controller nodes "
             "(kafka, kafka-2, kafka-3; topics with 3 replicas, min.insync.replicas=2); "
             "default: what the running stack has, else PLAYGROUND_BROKERS (1)")] = None,
    kafka_only: Annotated[bool, typer.Option(
        "--kafka-only", help="start only Kafka (its node or nodes) and create the topics")] = False,
) -> None:
    """Start the native stack in the background: Kafka (KRaft), REST, gRPC, the stream workers, the sink."""
    settings = stack_settings.effective(get_settings())
    if producer_rate is not None:
        settings = settings.model_copy(update={"producer_rate": producer_rate})
    if brokers is not None:
        if brokers not in (1, 3):
            raise typer.BadParameter(f"must be 1 or 3, got {brokers}", param_hint="--brokers")
        # Validated again: the other nodes' ports must now differ from the rest.
        settings = type(settings).model_validate({**settings.model_dump(), "brokers": brokers})
    stack.up(settings, components=stack.kafka_components(settings) if kafka_only else None,
             on_event=lambda m: console.print(f"  {m}"), stream_workers=stream_workers,
             with_producer=with_producer)
    print_urls(settings, _print_status())


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print the components as JSON on stdout")
                              ] = False) -> None:
    """Show each component: healthy or not, port, PID, uptime. Exit 1 if any is unhealthy."""
    if as_json:
        import dataclasses
        import json

        rows = stack.status(stack_settings.effective(get_settings()))
        sys.stdout.write(json.dumps([dataclasses.asdict(r) for r in rows], indent=2, default=str) + "\n")
        healthy = all(r.healthy for r in rows)
    else:
        healthy = all(r.healthy for r in _print_status())
    if not healthy:
        raise typer.Exit(1)


@app.command()
def down(
    purge: Annotated[bool, typer.Option(help="then delete the data folder: broker log, stores, logs")
                     ] = False,
) -> None:
    """Stop every component started by `up`; leaves no process behind."""
    settings = stack_settings.effective(get_settings())
    stopped = stack.down(settings, on_event=lambda m: console.print(f"  {m}"))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if purge:
        purge_data(settings)


def _print_status() -> list[stack.ComponentStatus]:
    settings = stack_settings.effective(get_settings())
    rows = stack.status(settings)
    table = Table(title="playground stack")
    for col in ("component", "state", "port", "pid", "uptime"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = (("[green]healthy" if r.healthy else "[red]unhealthy") if r.running
                 else "[red]crashed" if r.crashed else "[dim]stopped")
        uptime = f"{r.uptime_s:,.0f}s" if r.uptime_s is not None else "-"
        table.add_row(r.name, state, str(r.port), str(r.pid or "-"), uptime)
    console.print(table)
    print_brokers(rows)
    print_crashed(rows)
    print_accounting(settings)
    _print_store(settings)
    return rows


def _print_store(settings: Settings) -> None:
    """The store's figures; duplicates are valid records not stored because their event_id was."""
    st = stack.store_status(settings)
    if st.figures is None:
        console.print(f"store {st.path}: {st.note}", highlight=False, soft_wrap=True)
        return

    def n(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    f = st.figures
    console.print(f"store {st.path}: {n(f.events)} events, {n(f.dead_letters)} dead letters, "
                  f"{n(f.duplicates)} duplicates (valid records whose event_id was already stored)",
                  highlight=False, soft_wrap=True)


@app.command()
def demo(
    events: Annotated[int, typer.Option(min=1, max=50_000_000,
                                        help="transactions moved Kafka -> DuckDB")] = 20_000,
    flow_events: Annotated[int, typer.Option(min=100, max=1_000_000,
                                             help="events per dataflow mode")] = 5_000,
    parity_events: Annotated[int, typer.Option(min=100, max=1_000_000,
                                               help="events for batch vs stream features")] = 5_000,
    format_rows: Annotated[int, typer.Option(min=100, max=10_000_000, help="rows for the formats lab")
                           ] = 20_000,
    malformed_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="fraction of broken records")
                              ] = 0.005,
    seed: Annotated[int, typer.Option(min=0)] = 42,
    keep: Annotated[bool, typer.Option("--keep", help="leave the stack, a continuous producer and the "
                                                      "dashboard running, and print their URLs")] = False,
) -> None:
    """The tour: start the stack, Kafka -> DuckDB, then short flow compare, features parity and formats;
    one line per lesson, the report's path; stops everything it started (unless --keep)."""
    from dataflow_playground.app.tour import TourSizes, run_tour

    run_tour(get_settings(), TourSizes(events=events, flow_events=flow_events,
                                       parity_events=parity_events, format_rows=format_rows),
             seed=seed, keep=keep, malformed_rate=malformed_rate)


@bench_app.command("kafka")
def bench_kafka(
    events: Annotated[int, typer.Option(help="messages per repeat")] = 1_000_000,
    repeats: Annotated[int, typer.Option(help="timed repeats (median reported)")] = 3,
    partitions: Annotated[int, typer.Option()] = 3,
    tuned_only: Annotated[bool, typer.Option(help="skip the library-defaults producer")] = False,
) -> None:
    """Produce and consume throughput with kafka-python (events/s and MB/s, medians)."""
    from dataflow_playground.app.bench.kafka import check_args, run_bench

    try:
        check_args(events, repeats, partitions)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    run_bench(get_settings(), events=events, repeats=repeats, partitions=partitions,
              profiles=["tuned"] if tuned_only else None)


@bench_app.command("batch-vs-stream")
def bench_batch_vs_stream(
    events: Annotated[int, typer.Option(min=1_000, max=100_000_000, help="events for the batch side")
                      ] = 1_000_000,
    stream_events: Annotated[int, typer.Option(min=1_000, max=20_000_000,
                                               help="events for the stream's max-throughput run")] = 200_000,
    repeats: Annotated[int, typer.Option(min=1, max=20, help="timed batch repeats (median reported)")] = 3,
    freshness_seconds: Annotated[float, typer.Option(min=1.0, max=600.0, help="seconds per offered load")
                                 ] = 10.0,
    engine: Annotated[list[str] | None, typer.Option(
        help=f"stream engine(s) to measure: {', '.join(STREAM_ENGINES)} (default: all)")] = None,
    stream_repeats: Annotated[int, typer.Option(min=1, max=20, help="max-throughput runs per engine (median)")
                              ] = 2,
) -> None:
    """Same features in DuckDB SQL and in every stream engine: throughput, CPU, freshness."""
    from dataflow_playground.app.bench.batch_vs_stream import run_bench

    paths = run_bench(get_settings(), events=events, stream_events=stream_events, repeats=repeats,
                      freshness_seconds=freshness_seconds, engines=engine, stream_repeats=stream_repeats)
    console.print(f"wrote {', '.join(str(p) for p in paths.values())}")


def _progress_console(as_json: bool) -> Any:
    """Where a benchmark shows its progress: stderr when stdout carries the JSON."""

    return stderr_console() if as_json else console


def _report(summary: dict[str, Any], table: Callable[[], Any], as_json: bool) -> None:
    """A benchmark's summary: one JSON object on stdout, or its table, takeaway and files."""
    import json

    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    console.print(table())
    console.print(f"[bold]Takeaway:[/bold] {summary['takeaway']}")
    console.print(f"[dim]wrote {', '.join(summary['results'].values())}[/dim]")


@bench_app.command("batch")
def bench_batch(
    events: Annotated[str, typer.Option(help="input sizes, comma-separated")] = "100000,1000000,10000000",
    engine: Annotated[str, typer.Option(help="batch engines, comma-separated: duckdb, spark")
                      ] = "duckdb,spark",
    repeats: Annotated[int, typer.Option(min=1, max=20, help="runs per engine and size (median)")] = 3,
    master: Annotated[str, typer.Option(help="Spark master: local[N] or spark://HOST:PORT")] = "local[2]",
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as one JSON object on stdout")
                       ] = False,
) -> None:
    """Batch engines by input size: events/s, peak RSS, seconds to the first result (start-up included)."""


    from dataflow_playground.app.bench.batch import (
        BatchBenchConfig,
        BatchBenchError,
        parse_engines,
        parse_sizes,
        run_bench,
        summary_table,
    )

    try:
        cfg = BatchBenchConfig(sizes=parse_sizes(events), engines=parse_engines(engine), repeats=repeats,
                               master=master)
    except BatchBenchError as err:
        raise typer.BadParameter(str(err)) from err
    summary = run_bench(get_settings(), cfg, _progress_console(as_json))
    _report(summary, lambda: summary_table(summary["runs"]), as_json)


@bench_app.command("stream")
def bench_stream(
    events: Annotated[int, typer.Option(min=1, max=20_000_000,
                                        help="events pre-filled for each catch-up (throughput) run")
                      ] = 1_000_000,
    workers: Annotated[str, typer.Option(help="worker counts to compare, comma-separated")] = "1,2",
    engine: Annotated[str, typer.Option(
        help=f"stream engines, comma-separated: {', '.join(STREAM_ENGINES)}")] = ",".join(STREAM_ENGINES),
    repeats: Annotated[int, typer.Option(min=1, max=20,
                                         help="catch-up + recovery runs per engine x workers (median)")] = 3,
    rate: Annotated[float, typer.Option(min=10.0, max=50_000.0,
                                        help="offered events/s while measuring freshness and recovery")
                    ] = 2_000.0,
    freshness_seconds: Annotated[float, typer.Option(min=1.0, max=600.0,
                                                     help="seconds of paced events for freshness")] = 20.0,
    kill_after: Annotated[float, typer.Option(min=0.5, max=60.0,
                                              help="seconds of paced events before worker 0 is SIGKILLed")
                          ] = 3.0,
    warmup_events: Annotated[int, typer.Option(min=0, max=5_000_000,
                                               help="untimed catch-up per engine first (0: none)")] = 20_000,
    recovery_timeout: Annotated[float, typer.Option(
        min=5.0, max=1800.0, help="seconds after the SIGKILL before a recovery counts as not done")] = 120.0,
    profile: Annotated[bool, typer.Option(
        help="sample the workers with py-spy during the first catch-up: where their time goes")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as one JSON object on stdout")
                       ] = False,
) -> None:
    """Stream engines by worker count: catch-up events/s and CPU, freshness, recovery after a SIGKILL."""


    from dataflow_playground.app.bench.stream import (
        StreamBenchConfig,
        StreamBenchError,
        parse_engines,
        parse_workers,
        run_bench,
        summary_table,
    )

    settings = get_settings()
    try:
        cfg = StreamBenchConfig(events=events, workers=tuple(parse_workers(workers)),
                                engines=tuple(parse_engines(engine)), repeats=repeats, rate=rate,
                                freshness_seconds=freshness_seconds, kill_after_s=kill_after,
                                warmup_events=warmup_events, recovery_timeout_s=recovery_timeout,
                                partitions=settings.partitions, profile=profile)
    except StreamBenchError as err:
        raise typer.BadParameter(str(err)) from err
    summary = run_bench(settings, cfg, _progress_console(as_json))
    _report(summary, lambda: summary_table(summary), as_json)


def main() -> None:
    try:
        app()
    except PlaygroundError as err:
        console.print(f"[red]error:[/red] {err}", soft_wrap=True, highlight=False)
        sys.exit(2)
    except ValidationError as err:  # a PLAYGROUND_* setting (or one of up's options) out of range
        for e in err.errors():
            field = "_".join(str(part) for part in e["loc"]).upper()
            where = f"PLAYGROUND_{field}" if field else "settings"
            console.print(f"[red]error:[/red] {where}: {e['msg']}", soft_wrap=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
