"""Mode 3, through a real-time transport: Kafka pub/sub, queue, and the consumer-down fault.

- pub/sub: two consumer groups, one member each; each group must receive all N.
- queue: one group of three members over (at least) three partitions; together
  they must receive the N exactly once, split between them.
Every run uses a throwaway topic created with the configured retention
(``PLAYGROUND_RETENTION_MS``), read back from the broker and reported.
Producing starts only once every group's assignment has settled, so the
figures measure the data path, not group joins.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dataflow_playground.app.flow.modes.common import (
    CONSUMER_MODULE,
    FAULT_RUN_S,
    SINK_MODULE,
    start_producer,
)
from dataflow_playground.app.flow.report import FlowResult, flow_result
from dataflow_playground.app.flow.runner import (
    Child,
    FlowContext,
    FlowError,
    read_report,
    wait_until,
    watch_receipts,
)
from dataflow_playground.core import kafka_admin, receipts
from dataflow_playground.storage.duckdb_store import EventStore

QUEUE_MEMBERS = 3


def _make_topic(ctx: FlowContext, label: str) -> tuple[str, int]:
    partitions = max(ctx.settings.partitions, QUEUE_MEMBERS)
    topic = f"flow-{re.sub(r'[^A-Za-z0-9._-]', '-', label)}-{uuid.uuid4().hex[:8]}"
    kafka_admin.ensure_topics(ctx.settings.bootstrap_servers, [
        kafka_admin.TopicSpec(topic, partitions, ctx.settings.retention_ms)])
    return topic, partitions


def _assignments(folder: Path, names: list[str]) -> dict[str, list[int]]:
    out = {}
    for name in names:
        path = folder / f"{name}.assign.json"
        try:
            out[name] = json.loads(path.read_text())["partitions"]
        except (OSError, ValueError, KeyError):
            out[name] = []
    return out


def _start_member(ctx: FlowContext, label: str, topic: str, group: str, folder: Path,
                  name: str) -> Child:
    return ctx.spawn(f"{label}-{name}", CONSUMER_MODULE, "--mode", "kafka", "--name", name,
                     "--bootstrap", ctx.settings.bootstrap_servers, "--topic", topic,
                     "--group", group, "--receipts", str(folder))


# kafka-python's classic group protocol now and then stalls a rebalance on this loaded
# 2-core box (the leader stops heartbeating and nobody gets an assignment). Rather than
# hang, a run restarts its members on a fresh group; the retries are reported.
JOIN_TIMEOUT_S = 30.0
JOIN_ATTEMPTS = 3


def _join(start: Callable[[str], list[Child]], folders: list[Path], settled: Callable[[], bool],
          what: str) -> tuple[list[Child], int]:
    """Start members (``start(group_suffix)``) until their assignment settles; (members, retries)."""
    for attempt in range(JOIN_ATTEMPTS):
        for folder in folders:
            for stale in folder.glob("*.assign.json"):
                stale.unlink()
        members = start(uuid.uuid4().hex[:6])
        try:
            wait_until(settled, JOIN_TIMEOUT_S, what, members, interval_s=0.1)
            return members, attempt
        except FlowError:
            for m in members:
                m.stop()
            if attempt == JOIN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def run_pubsub(ctx: FlowContext, events: int, groups: int = 2, batch: int = 500,
               rate: float | None = None, label: str = "kafka-pubsub") -> list[FlowResult]:
    """``groups`` groups of one member each; a result per group plus the mode's summary row."""
    topic, partitions = _make_topic(ctx, label)
    folders = {f"g{i + 1}": ctx.folder(label, f"g{i + 1}") for i in range(groups)}
    members: dict[str, Child] = {}

    def start(run: str) -> list[Child]:
        members.clear()
        members.update({g: _start_member(ctx, label, topic, f"{label}-{g}-{run}", f, "m1")
                        for g, f in folders.items()})
        return list(members.values())

    try:
        _, join_retries = _join(start, list(folders.values()),
                                lambda: all(len(_assignments(f, ["m1"])["m1"]) == partitions
                                            for f in folders.values()),
                                "every group's assignment")
        for m in members.values():
            m.mark_ready()
        report_path = ctx.folder(label) / "producer.json"
        producer = start_producer(ctx, "kafka", ctx.settings.bootstrap_servers, events, report_path,
                                  batch, rate, "--topic", topic)
        report = read_report(report_path, producer, timeout_s=300)
        watch_receipts(ctx, label, list(folders.values()), events * groups, producer, timeout_s=120)
    finally:
        for m in members.values():
            m.stop()
        retention = kafka_admin.topic_retention_ms(ctx.settings.bootstrap_servers, topic)
        kafka_admin.delete_topics(ctx.settings.bootstrap_servers, [topic])
    sent = np.arange(events)
    per_group = [
        flow_result(f"{label}/{g}", sent, receipts.read(receipts.receipt_files(f)),
                    cpu_s=members[g].cpu_used(), first_sent_us=report["first_sent_us"])
        for g, f in folders.items()]
    detail = {"topic_partitions": partitions, "retention_ms": retention, "offered_rate": rate,
              "group_join_retries": join_retries,
              "groups": {r.mode: {"received": r.received, "events_per_s": r.events_per_s,
                                  "p99_ms": r.p99_ms} for r in per_group}}
    worst = min(per_group, key=lambda r: r.events_per_s)
    summary = FlowResult(
        mode=label, sent=events, received=min(r.received for r in per_group),
        lost=sum(r.lost for r in per_group), duplicated=sum(r.duplicated for r in per_group),
        events_per_s=worst.events_per_s,
        p50_ms=max(r.p50_ms or 0 for r in per_group), p95_ms=max(r.p95_ms or 0 for r in per_group),
        p99_ms=max(r.p99_ms or 0 for r in per_group),
        cpu_s=round(report["cpu_s"] + sum(r.cpu_s for r in per_group), 3),
        rejected=report["stats"]["gave_up_events"], detail=detail)
    return [summary, *per_group]


def run_queue(ctx: FlowContext, events: int, batch: int = 500, rate: float | None = None,
              label: str = "kafka-queue") -> FlowResult:
    """One group of ``QUEUE_MEMBERS`` members sharing the partitions: no overlap allowed."""
    topic, partitions = _make_topic(ctx, label)
    folder = ctx.folder(label, "members")
    names = [f"m{i + 1}" for i in range(QUEUE_MEMBERS)]

    def settled() -> bool:
        parts = [p for ps in _assignments(folder, names).values() for p in ps]
        return all(_assignments(folder, names).values()) and sorted(parts) == list(range(partitions))

    members: list[Child] = []
    try:
        members, join_retries = _join(
            lambda run: [_start_member(ctx, label, topic, f"{label}-{run}", folder, n) for n in names],
            [folder], settled, "the queue group's assignment")
        for m in members:
            m.mark_ready()
        shares = _assignments(folder, names)
        report_path = ctx.folder(label) / "producer.json"
        producer = start_producer(ctx, "kafka", ctx.settings.bootstrap_servers, events, report_path,
                                  batch, rate, "--topic", topic)
        report = read_report(report_path, producer, timeout_s=300)
        watch_receipts(ctx, label, [folder], events, producer, timeout_s=120)
    finally:
        for m in members:
            m.stop()
        retention = kafka_admin.topic_retention_ms(ctx.settings.bootstrap_servers, topic)
        kafka_admin.delete_topics(ctx.settings.bootstrap_servers, [topic])
    per_member = {p.stem: receipts.read([p]) for p in receipts.receipt_files(folder)}
    id_sets = [set(r["event_id"].tolist()) for r in per_member.values()]
    overlap = sum(len(a & b) for i, a in enumerate(id_sets) for b in id_sets[i + 1:])
    got = receipts.read(receipts.receipt_files(folder))
    return flow_result(label, np.arange(events), got,
                       cpu_s=report["cpu_s"] + sum(m.cpu_used() for m in members),
                       first_sent_us=report["first_sent_us"],
                       detail={"topic_partitions": partitions, "retention_ms": retention,
                               "group_join_retries": join_retries, "assignment": shares,
                               "overlap_between_members": overlap,
                               "share": {k: len(v) for k, v in per_member.items()}})


_COMMITTED = re.compile(rb"committed consumed=(\d+)")
# A sink in a fault run exits after this long without records. Long enough that a producer
# starved of CPU on a loaded machine is not taken for the end of the stream.
SINK_IDLE_EXIT_S = 8


def _consumed(child: Child) -> int:
    """The last committed count the existing sink printed (its log survives a SIGKILL)."""
    found = _COMMITTED.findall(child.log.read_bytes()) if child.log.exists() else []
    return int(found[-1]) if found else 0


def run_consumer_down(ctx: FlowContext, events: int, downtime_s: float = 3.0,
                      batch: int = 100) -> FlowResult:
    """The existing Kafka -> DuckDB sink, SIGKILLed mid-run and restarted: count loss, doubles, lag."""
    label = "kafka+consumer-down"
    topic, partitions = _make_topic(ctx, label)
    base = ctx.folder(label)
    db = base / "sink.duckdb"
    group = f"{label}-{uuid.uuid4().hex[:6]}"
    bootstrap = ctx.settings.bootstrap_servers
    sinks: list[Child] = []

    def start_sink() -> Child:
        # Separate log per run, so each one's committed count is its own.
        sink = ctx.spawn(f"{label}-sink-{len(sinks)}", SINK_MODULE, "--topic", topic,
                         "--group", group, "--db", str(db), "--idle-timeout", str(SINK_IDLE_EXIT_S),
                         "--max-poll-records", "500")
        sinks.append(sink)
        return sink

    start_sink()
    report_path = base / "producer.json"
    producer = start_producer(ctx, "kafka", bootstrap, events, report_path, batch,
                              events / FAULT_RUN_S, "--topic", topic)
    lag_samples: list[int] = []
    try:
        wait_until(lambda: _consumed(sinks[0]) >= events * 0.3, 120, "the sink's first commits",
                   [sinks[0], producer], interval_s=0.05)
        t0 = time.monotonic()
        sinks[0].kill()
        # Read after the kill: the sink may commit another batch between a read and the kill.
        before = _consumed(sinks[0])
        ctx.say(f"  [yellow]fault:[/yellow] sink killed (SIGKILL) after committing {before:,}; "
                f"down for {downtime_s:g}s")
        while time.monotonic() - t0 < downtime_s:
            lag_samples.append(kafka_admin.group_lag(bootstrap, group, topic))
            time.sleep(0.3)
        start_sink()
        restarted = time.monotonic()
        # The restarted sink resumes from the group's committed offsets: caught up when the
        # producer has sent every event and the group has committed up to the end of the topic.
        # (The logs cannot say it: a SIGKILL between a commit and its log line loses the line.)
        wait_until(lambda: report_path.exists() and kafka_admin.group_lag(bootstrap, group, topic) == 0,
                   120, "the restarted sink to catch up", [sinks[-1]], interval_s=0.1)
        done_us = time.time() * 1e6
        catch_up_s = time.monotonic() - restarted
        report = read_report(report_path, producer, timeout_s=300)
        sinks[-1].proc.wait(timeout=60)  # it exits after SINK_IDLE_EXIT_S without new records
    finally:
        for s in sinks:
            s.stop()
        kafka_admin.delete_topics(bootstrap, [topic])
    with EventStore(db, read_only=True) as store:
        ids = np.fromiter(store.event_ids(), dtype=np.int64)
        dup_rows = store.duplicate_ids()
    consumed = sum(_consumed(s) for s in sinks)
    span_s = (done_us - report["first_sent_us"]) / 1e6
    sent = np.arange(events)
    arrived = np.isin(sent, ids)
    return FlowResult(
        mode=label, sent=events, received=int(arrived.sum()), lost=int((~arrived).sum()),
        duplicated=dup_rows, events_per_s=round(len(ids) / span_s, 1), p50_ms=None, p95_ms=None,
        p99_ms=None, cpu_s=round(report["cpu_s"] + sum(s.cpu_s() for s in sinks), 3),
        detail={"downtime_s": downtime_s, "committed_before_kill": before,
                "max_lag_during_outage": max(lag_samples, default=0), "lag_samples": lag_samples,
                "consumed_total": consumed, "redelivered": max(consumed - events, 0),
                "catch_up_s": round(catch_up_s, 2), "topic_partitions": partitions,
                "note": "the sink records no send time, so no latency; events/s spans first send "
                        "to the restarted sink's commit of the last event"})
