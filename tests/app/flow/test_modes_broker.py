"""Each dataflow mode with real processes (and, for Kafka, the session's real broker)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from rich.console import Console

from dataflow_playground.app.flow.modes import kafka
from dataflow_playground.app.flow.modes.db import run_db
from dataflow_playground.app.flow.modes.services import run_service
from dataflow_playground.app.flow.runner import FlowContext
from dataflow_playground.core.settings import Settings
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def ctx(kafka_stack: Settings) -> Iterator[FlowContext]:
    c = FlowContext.create(kafka_stack, Console(stderr=True), seed=7, quiet=True)
    yield c
    c.stop_all()


def test_db_mode_hands_off_every_event_once(ctx: FlowContext) -> None:
    r = run_db(ctx, 3000, roll_ms=30, poll_ms=10)
    assert (r.sent, r.received, r.lost, r.duplicated) == (3000, 3000, 0, 0)
    assert r.detail["segments"] >= 1 and r.p50_ms is not None and r.p50_ms > 0


@pytest.mark.parametrize(("kind", "batch", "n"), [("rest", 500, 3000), ("rpc", 500, 3000),
                                                   ("rest", 1, 300), ("rpc", 1, 300)])
def test_service_modes_deliver_every_event_once(ctx: FlowContext, kind: str, batch: int, n: int) -> None:
    r = run_service(ctx, kind, n, batch=batch)  # type: ignore[arg-type]
    assert (r.received, r.lost, r.duplicated, r.rejected) == (n, 0, 0, 0)
    assert r.detail["caller"]["retries"] == 0


def test_kafka_pubsub_every_group_gets_everything(ctx: FlowContext) -> None:
    summary, g1, g2 = kafka.run_pubsub(ctx, 3000)
    for r in (g1, g2):
        assert (r.received, r.lost, r.duplicated) == (3000, 0, 0)
    assert summary.ok and summary.detail["retention_ms"] == ctx.settings.retention_ms


def test_kafka_queue_members_share_without_overlap(ctx: FlowContext) -> None:
    r = kafka.run_queue(ctx, 3000)
    assert (r.received, r.lost, r.duplicated) == (3000, 0, 0)
    assert r.detail["overlap_between_members"] == 0
    shares = r.detail["share"]
    assert len(shares) == kafka.QUEUE_MEMBERS and all(v > 0 for v in shares.values())
    assert sum(shares.values()) == 3000


def test_cli_json_prints_only_json(stack_env: dict[str, str], kafka_stack: Settings) -> None:
    out = run_cli(stack_env, "flow", "rest", "--events", "1000", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    rest = doc["modes"]["rest"]
    keys = {"sent", "received", "lost", "duplicated", "events_per_s", "p50_ms", "p95_ms", "p99_ms"}
    assert keys <= set(rest)
    assert (rest["sent"], rest["lost"], rest["duplicated"]) == (1000, 0, 0)


def test_playground_up_serves_grpc(kafka_stack: Settings) -> None:
    from dataflow_playground.app import stack
    from dataflow_playground.producers.generator import GeneratorConfig, generate_events
    from dataflow_playground.producers.to_rpc import RpcWriter

    assert stack.read_pid(kafka_stack, "rpc") is not None
    w = RpcWriter(f"{kafka_stack.host}:{kafka_stack.rpc_port}", stream_batches=1)
    w.send(generate_events(GeneratorConfig(events=1, seed=1)))
    w.close()
    assert w.stats.accepted == 1
