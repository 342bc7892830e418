"""Mode 1, through a database: DuckDB segments written by one process, read by another."""

from __future__ import annotations

import numpy as np

from dataflow_playground.app.flow.modes.common import (
    CONSUMER_MODULE,
    FAULT_RUN_S,
    inject_outage,
    start_producer,
)
from dataflow_playground.app.flow.report import FlowResult, flow_result
from dataflow_playground.app.flow.runner import Child, FlowContext, read_report, wait_until, watch_receipts
from dataflow_playground.core import receipts
from dataflow_playground.producers.to_db import sealed_segments


def run_db(ctx: FlowContext, events: int, batch: int = 500, rate: float | None = None,
           roll_ms: float = 50.0, poll_ms: float = 20.0,
           fault_downtime_s: float | None = None) -> FlowResult:
    label = "db" if fault_downtime_s is None else "db+reader-down"
    base = ctx.folder(label)
    segments, rcpt = ctx.folder(label, "segments"), ctx.folder(label, "receipts")
    readers: list[Child] = []

    def start_reader() -> None:
        name = f"reader-{len(readers)}"
        readers.append(ctx.spawn(f"{label}-{name}", CONSUMER_MODULE, "--mode", "db", "--name", name,
                                 "--segments", str(segments), "--receipts", str(rcpt),
                                 "--poll-ms", str(poll_ms)))

    start_reader()
    wait_until((rcpt / "reader-0.ready").exists, 60, "the DuckDB reader", readers)
    readers[0].mark_ready()
    if fault_downtime_s is not None and rate is None:
        rate = events / FAULT_RUN_S
    report_path = base / "producer.json"
    producer = start_producer(ctx, "db", str(segments), events, report_path, batch, rate,
                              "--roll-ms", str(roll_ms))
    detail: dict[str, object] = {"roll_ms": roll_ms, "poll_ms": poll_ms, "batch": batch,
                                 "offered_rate": rate}
    try:
        if fault_downtime_s is not None:
            outage = inject_outage(ctx, [rcpt], events, producer, kill=lambda: readers[-1].kill(),
                                   restart=start_reader, downtime_s=fault_downtime_s)
            detail["outage"] = outage.__dict__
            detail["segments_waiting_at_restart"] = len(sealed_segments(segments)) - len(
                receipts.receipt_files(rcpt))
        report = read_report(report_path, producer, timeout_s=300)
        watch_receipts(ctx, label, [rcpt], events, producer, timeout_s=120)
    finally:
        for r in readers:
            r.stop()
    got = receipts.read(receipts.receipt_files(rcpt))
    detail["segments"] = len(sealed_segments(segments))
    detail["producer"] = report["stats"]
    return flow_result(label, np.arange(events), got,
                       cpu_s=report["cpu_s"] + sum(r.cpu_used() for r in readers),
                       first_sent_us=report["first_sent_us"], rejected=report["stats"]["rejected"],
                       detail=detail)
