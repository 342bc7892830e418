"""What `up` and `status` print beyond the table: where to reach the stack, what crashed, purge."""

from __future__ import annotations

import shutil

import httpx

from dataflow_playground.app import stack
from dataflow_playground.app.console import console
from dataflow_playground.core.errors import StackError
from dataflow_playground.core.settings import Settings

LOG_LINES = 10


def stack_urls(settings: Settings) -> dict[str, str]:
    """Addresses of the running components, by what they are (only those that run)."""
    running = {r.name: r for r in stack.status(settings) if r.running}
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


def print_urls(settings: Settings) -> None:
    for what, url in stack_urls(settings).items():
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


def purge_data(settings: Settings) -> None:
    """Delete the data folder (broker log, stores, logs), only once nothing of the stack runs."""
    alive = [r.name for r in stack.status(settings) if r.pid is not None]
    if alive:
        raise StackError(f"not purging {settings.data_dir}: still running: {', '.join(alive)}")
    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
        console.print(f"purged {settings.data_dir}")
