"""``playground topics``: create the stack's topics, list them with offsets and lag, tail one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from dataflow_playground.app import stack_settings
from dataflow_playground.app.console import console
from dataflow_playground.core import kafka_admin, kafka_inspect
from dataflow_playground.core.settings import Settings, get_settings

topics_app = typer.Typer(help="Kafka topics: create the stack's, list them with lag, tail one.",
                         no_args_is_help=True)
MAX_TAIL = 10_000
VALUE_CHARS = 240


def _settings() -> Settings:
    return stack_settings.effective(get_settings())


@topics_app.command("create")
def create() -> None:
    """Create the topics (transactions, its dead-letter topics) if they do not exist."""
    settings = _settings()
    specs = kafka_admin.default_topics(settings)
    created = kafka_admin.ensure_topics(settings.bootstrap_servers, specs)
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        console.print(f"{spec.name}: {spec.partitions} partitions, "
                      f"{', '.join(f'{k}={v}' for k, v in spec.topic_configs().items())} ({state})",
                      highlight=False)


@topics_app.command("list")
def list_topics(
    internal: Annotated[bool, typer.Option(help="include internal topics (__consumer_offsets)")] = False,
) -> None:
    """Each topic's partitions with begin/end offsets, and each consumer group's lag per partition."""
    settings = _settings()
    topics = kafka_inspect.overview(settings.bootstrap_servers, include_internal=internal)
    table = Table(title=f"topics at {settings.bootstrap_servers}")
    for col, justify in (("topic", "left"), ("partition", "right"), ("begin", "right"),
                         ("end", "right"), ("records", "right"), ("group lag", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for t in topics:
        for i, p in enumerate(t.partitions):
            lag = ", ".join(f"{g}={n:,}" for g, n in sorted(p.lag.items())) or "-"
            table.add_row(t.name if i == 0 else "", str(p.partition), f"{p.begin:,}", f"{p.end:,}",
                          f"{p.end - p.begin:,}", lag)
    console.print(table)
    if not topics:
        console.print("no topics yet: 'playground up' or 'playground topics create' makes them")


def _text(raw: bytes | None) -> str:
    if raw is None:
        return "null"
    text = raw.decode("utf-8", errors="backslashreplace")
    return text if len(text) <= VALUE_CHARS else f"{text[:VALUE_CHARS]}… ({len(raw):,} bytes)"


@topics_app.command("tail")
def tail(
    topic: Annotated[str, typer.Argument(help="e.g. transactions, transactions.dlq.sink")],
    n: Annotated[int, typer.Option("-n", "--lines", help=f"how many records (1..{MAX_TAIL:,})")] = 10,
) -> None:
    """The last N records of TOPIC: partition, offset, timestamp, key, headers and value."""
    if not 1 <= n <= MAX_TAIL:
        raise typer.BadParameter(f"-n must be between 1 and {MAX_TAIL:,}, got {n}")
    settings = _settings()
    records = kafka_inspect.tail(settings.bootstrap_servers, topic, n)
    if not records:
        console.print(f"{topic} is empty")
        return
    for r in records:
        ts = datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
        headers = ", ".join(f"{k}={_text(v)}" for k, v in r.headers) or "-"
        console.print(f"[bold]p{r.partition}@{r.offset}[/bold] {ts} key={_text(r.key)} headers: {headers}",
                      highlight=False, soft_wrap=True)
        console.print(f"  {_text(r.value)}", highlight=False, soft_wrap=True, markup=False)
