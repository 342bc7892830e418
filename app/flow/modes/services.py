"""Mode 2, through services: the REST (FastAPI) or gRPC ingestion service as the consumer.

The service runs as its own process on a free loopback port, writing receipts
into the run folder; the producer process calls it. With a fault, the service is
killed (SIGKILL) mid-run and restarted on the same port after the downtime: the
caller's errors, retries, timeouts and give-ups are what the book's con costs.
"""

from __future__ import annotations

from typing import Literal

import httpx
import numpy as np

from dataflow_playground.app.flow.modes.common import FAULT_RUN_S, inject_outage, start_producer
from dataflow_playground.app.flow.report import FlowResult, flow_result
from dataflow_playground.app.flow.runner import (
    Child,
    FlowContext,
    free_port,
    read_report,
    wait_until,
    watch_receipts,
)
from dataflow_playground.core import receipts
from dataflow_playground.services.ingest import INGEST_DIR_ENV
from dataflow_playground.services.rest import app as rest_app
from dataflow_playground.services.rpc.server import ready as rpc_ready

Service = Literal["rest", "rpc"]


def _rest_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def run_service(ctx: FlowContext, kind: Service, events: int, batch: int = 500,
                rate: float | None = None, fault_downtime_s: float | None = None,
                stream_batches: int = 20) -> FlowResult:
    single = batch == 1
    label = f"{kind}{'-single' if single else ''}{'' if fault_downtime_s is None else '+service-down'}"
    base = ctx.folder(label)
    rcpt = ctx.folder(label, "receipts")
    host = ctx.settings.host
    port = free_port(host)
    env = {INGEST_DIR_ENV: str(rcpt)}
    if kind == "rest":
        target = f"http://{host}:{port}"
        module, args = "uvicorn", [f"{rest_app.__name__}:create_app", "--factory", "--host", host,
                                   "--port", str(port), "--log-level", "warning"]

        def healthy() -> bool:
            return _rest_up(target)
    else:
        target = f"{host}:{port}"
        module, args = "dataflow_playground.services.rpc.server", ["--host", host, "--port", str(port)]

        def healthy() -> bool:
            return rpc_ready(target, timeout_s=0.5)

    servers: list[Child] = []

    def start_server() -> None:
        servers.append(ctx.spawn(f"{label}-service-{len(servers)}", module, *args, env=env))
        wait_until(healthy, 60, f"the {kind} service on port {port}", servers[-1:], interval_s=0.1)

    start_server()
    servers[0].mark_ready()
    if fault_downtime_s is not None and rate is None:
        rate = events / FAULT_RUN_S
    report_path = base / "producer.json"
    extra = ["--stream-batches", str(1 if single else stream_batches)] if kind == "rpc" else []
    producer = start_producer(ctx, kind, target, events, report_path, batch, rate, *extra)
    detail: dict[str, object] = {"batch": batch, "offered_rate": rate,
                                 "call": ("unary" if single else "client-stream") if kind == "rpc"
                                 else ("POST /events" if single else "POST /events/batch")}
    try:
        if fault_downtime_s is not None:
            outage = inject_outage(ctx, [rcpt], events, producer, kill=lambda: servers[-1].kill(),
                                   restart=start_server, downtime_s=fault_downtime_s)
            detail["outage"] = outage.__dict__
        report = read_report(report_path, producer, timeout_s=300)
        watch_receipts(ctx, label, [rcpt], events, producer, timeout_s=60, settle_s=1.0)
    finally:
        for s in servers:
            s.stop()
    stats = report["stats"]
    detail["caller"] = {k: stats[k] for k in ("errors", "retries", "timeouts", "gave_up_events")}
    return flow_result(label, np.arange(events), receipts.read(receipts.receipt_files(rcpt)),
                       cpu_s=report["cpu_s"] + sum(s.cpu_used() for s in servers),
                       first_sent_us=report["first_sent_us"], rejected=stats["rejected"],
                       detail=detail)
