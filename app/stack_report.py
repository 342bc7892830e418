"""What `up` and `status` print beyond the table: where to reach the stack, what crashed, purge."""

from __future__ import annotations

import shutil

import httpx
from rich.table import Table

from dataflow_playground.app import stack
from dataflow_playground.app.console import console
from dataflow_playground.core.errors import StackError
from dataflow_playground.core.metrics import metrics_targets
from dataflow_playground.core.settings import Settings
from dataflow_playground.services.dashboard.metrics_scrape import LOSS_COUNTERS, Scrape, group_of, scrape

LOG_LINES = 10


def stack_urls(settings: Settings, rows: list[stack.ComponentStatus] | None = None) -> dict[str, str]:
    """Addresses of the running components, by what they are (only those that run); ``rows``:
    the stack's status if the caller has it already."""
    running = {r.name: r for r in (stack.status(settings) if rows is None else rows) if r.running}
    urls: dict[str, str] = {}
    if "kafka" in running:
        urls["Kafka bootstrap"] = settings.bootstrap_servers
    if "rest" in running:
        base = settings.rest_url
        urls["REST API docs"] = f"{base}/docs"
        urls["REST health"] = f"{base}/health"
        try:
            if httpx.get(f"{base}/metrics", timeout=2.0).status_code == 200:
                urls["REST metrics"] = f"{base}/metrics"
        except httpx.HTTPError:
            pass
    if "rpc" in running:
        urls["gRPC"] = f"{settings.host}:{settings.rpc_port}"
    if "dashboard" in running:
        urls["dashboard"] = f"http://{settings.host}:{running['dashboard'].port}/"
    return urls


def print_urls(settings: Settings, rows: list[stack.ComponentStatus] | None = None) -> None:
    for what, url in stack_urls(settings, rows).items():
        console.print(f"  {what:<16} {url}", highlight=False, soft_wrap=True)


def print_crashed(rows: list[stack.ComponentStatus]) -> None:
    """For each crashed component: where its log is and how it ended."""
    for r in rows:
        if not r.crashed or r.log is None:
            continue
        console.print(f"[red]{r.name} crashed[/red] (its process died without 'playground down'); "
                      f"log {r.log}, last lines:", highlight=False, soft_wrap=True)
        console.print(stack.tail_log(r.log, LOG_LINES), highlight=False, soft_wrap=True, markup=False)
        console.print(f"  start it again with 'playground up'; 'playground logs {r.name}' shows more",
                      highlight=False)


def print_brokers(rows: list[stack.ComponentStatus]) -> None:
    """What the Kafka cluster says of each native node: live or not, the active controller,
    and the partitions missing an in-sync replica."""
    nodes = [r for r in rows if r.broker is not None]
    if not nodes:
        return
    parts = []
    for r in nodes:
        b = r.broker
        assert b is not None
        state = ("fenced" if b.fenced else "live") if b.registered else "not registered"
        role = ", active controller" if b.active_controller else ""
        parts.append(f"{b.node_id} ({r.name}) {state}{role}, leads {b.leads}")
    urp = sum(r.broker.under_replicated for r in nodes if r.broker)
    colour = "green" if urp == 0 else "red"
    console.print(f"kafka brokers: {'; '.join(parts)}. Under-replicated partitions: "
                  f"[{colour}]{urp}[/{colour}]", highlight=False, soft_wrap=True)


# (column, counter) of the loss-accounting table, in the order a record passes them.
ACCOUNTING = tuple(zip(("sent", "acknowledged", "received", "stored", "dead letters", "duplicates",
                        "retries"), LOSS_COUNTERS, strict=True))


def accounting_rows(found: Scrape) -> list[dict[str, float | str | None]]:
    """One row per component that serves metrics: its loss-accounting counters (None where the
    component has no such counter), and whether received = stored + dead letters + duplicates.

    Stream workers get no balance: each record is received once per stage it passes (the
    merchant stage reads the repartition topic) and again when re-read after a restore; their
    books are checked against batch SQL instead (``playground features parity``)."""
    components = sorted({comp for (_metric, comp) in found.counters if comp})  # "": the client's own
    rows: list[dict[str, float | str | None]] = []
    for comp in components:
        row: dict[str, float | str | None] = {"component": comp}
        for column, metric in ACCOUNTING:
            row[column] = found.counters.get((metric, comp))
        received = row["received"]
        parts = [row[c] for c in ("stored", "dead letters", "duplicates")]
        row["balanced"] = (None if not isinstance(received, float) or group_of(comp) == "stream" else
                           "yes" if received == sum(p for p in parts if isinstance(p, float)) else "no")
        rows.append(row)
    return rows


def print_accounting(settings: Settings) -> None:
    """The counters every ingress and consumer serves on /metrics, scraped now: what each
    received, stored, dead-lettered, found duplicate and retried (the producer: sent, acknowledged)."""
    targets = metrics_targets(settings)  # every process registers itself, REST included
    if not targets:
        return
    with httpx.Client(timeout=2.0) as client:
        found = scrape(targets, client)
    books = accounting_rows(found)
    if books:
        table = Table(title="loss accounting (each process's /metrics, since it started)")
        for col in ("component", *(c for c, _ in ACCOUNTING), "balanced"):
            table.add_column(col, justify="left" if col == "component" else "right")
        for row in books:
            table.add_row(*(("-" if v is None else f"{v:,.0f}" if isinstance(v, float) else str(v))
                            for v in row.values()))
        console.print(table)
        console.print("balanced: received = stored + dead letters + duplicates (not for stream "
                      "workers: they receive a record once per stage and again after a restore)",
                      highlight=False, soft_wrap=True)
    for comp, err in sorted(found.errors.items()):
        console.print(f"  {comp}: metrics not readable ({err})", highlight=False, soft_wrap=True)


def purge_data(settings: Settings) -> None:
    """Delete the data folder (broker log, stores, logs), only once nothing of the stack runs."""
    alive = [r.name for r in stack.status(settings) if r.pid is not None]
    if alive:
        raise StackError(f"not purging {settings.data_dir}: still running: {', '.join(alive)}")
    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
        console.print(f"purged {settings.data_dir}")
