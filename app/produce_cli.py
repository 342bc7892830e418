"""``playground produce``: seeded events into the stack's topic at a steady rate, until done or stopped."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from dataflow_playground.app import stack_settings
from dataflow_playground.app.console import console
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.errors import StackError
from dataflow_playground.core.metrics import producer_metrics, serve_metrics
from dataflow_playground.core.settings import get_settings
from dataflow_playground.producers.continuous import (
    MAX_RATE,
    PacedProducer,
    ProduceConfig,
    ProduceConfigError,
    ProduceTotals,
    parse_duration,
    peak_rss_mb,
)
from dataflow_playground.producers.to_kafka import make_producer


def _write_status(path: Path, totals: ProduceTotals) -> None:
    """The heartbeat `status` reads for the stack's producer: totals and when they were taken."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**totals.snapshot(), "updated_at": time.time(), "pid": os.getpid()}))
    tmp.replace(path)


def produce_command(
    rate: Annotated[float, typer.Option(help=f"events per second (more than 0, at most {MAX_RATE:,.0f})")
                    ] = 500.0,
    duration: Annotated[str | None, typer.Option(help="stop after this long: 60s, 5m, 1h")] = None,
    events: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    out_of_order: Annotated[float, typer.Option(help="fraction of events with a late event time")] = 0.0,
    max_lateness_ms: Annotated[int, typer.Option(help="how late an out-of-order event is at most")] = 5_000,
    malformed: Annotated[float, typer.Option(help="fraction of deliberately broken records")] = 0.0,
    seed: Annotated[int, typer.Option(help="the same seed gives the same users, amounts, ...")] = 42,
    topic: Annotated[str | None, typer.Option(help="default: the stack's topic (settings.topic)")] = None,
    status_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """Send seeded transactions to Kafka at --rate, generated in bounded chunks, until done or Ctrl-C.

    Without --duration or --events it runs until stopped (SIGINT/SIGTERM): it then stops
    sending, waits for the acknowledgements in flight and prints sent / acknowledged / failed.
    """
    try:
        cfg = ProduceConfig(rate=rate, events=events,
                            duration_s=parse_duration(duration) if duration is not None else None,
                            out_of_order=out_of_order, max_lateness_ms=max_lateness_ms,
                            malformed=malformed, seed=seed)
    except ProduceConfigError as err:
        raise typer.BadParameter(str(err)) from err
    settings = stack_settings.effective(get_settings())
    target = topic or settings.topic
    if not kafka_admin.kafka_ready(settings.bootstrap_servers, timeout_ms=5000):
        raise StackError(f"no Kafka broker answers at {settings.bootstrap_servers}. Start the stack with "
                         "'playground up' (or check 'playground status'), then produce again.")
    metrics = None
    if status_file is not None:  # the stack's producer component: scraped like the others
        serve_metrics(settings, "producer")
        metrics = producer_metrics("producer")
    producer = make_producer(settings.bootstrap_servers)
    paced = PacedProducer(producer, target, cfg, metrics)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: paced.stop())

    limit = (f"{cfg.events:,} events" if cfg.events else
             f"{cfg.duration_s:g}s" if cfg.duration_s else "until stopped (Ctrl-C)")
    console.print(f"producing to {target} at {settings.bootstrap_servers}: {cfg.rate:g} events/s, "
                  f"{limit}, seed {cfg.seed}", highlight=False)
    last_line = [0.0]

    def show(t: ProduceTotals, live: object) -> None:
        line = (f"sent {t.sent:,}  acknowledged {t.acknowledged:,}  failed {t.failed:,}  "
                f"{t.sent / t.elapsed_s if t.elapsed_s else 0:,.0f} events/s  {t.elapsed_s:,.0f}s")
        if status_file is not None:
            _write_status(status_file, t)
        if console.is_terminal:
            live.update(line)  # type: ignore[attr-defined]
        elif time.monotonic() - last_line[0] >= 10:  # a log: one line every 10 s
            console.print(line, highlight=False)
            last_line[0] = time.monotonic()

    try:
        with console.status("starting") as live:
            totals = paced.run(on_progress=lambda t: show(t, live))
    finally:
        producer.close(timeout=5)
    if status_file is not None:
        _write_status(status_file, totals)
    unacked = totals.sent - totals.acknowledged - totals.failed
    console.print(f"sent {totals.sent:,} (malformed {totals.malformed_sent:,}), acknowledged "
                  f"{totals.acknowledged:,}, failed {totals.failed:,}"
                  f"{f', unacknowledged {unacked:,}' if unacked else ''} in {totals.elapsed_s:,.1f}s "
                  f"({totals.sent / totals.elapsed_s if totals.elapsed_s else 0:,.0f} events/s); "
                  f"peak RSS {peak_rss_mb():,.0f} MB", highlight=False)
    for error in totals.errors:
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    if totals.failed or unacked:
        raise typer.Exit(1)
