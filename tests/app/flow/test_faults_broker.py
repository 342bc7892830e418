"""The consumer-down faults, with real processes killed by SIGKILL mid-run and restarted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rich.console import Console

from dataflow_playground.app.flow.modes import kafka
from dataflow_playground.app.flow.modes.db import run_db
from dataflow_playground.app.flow.modes.services import run_service
from dataflow_playground.app.flow.runner import FlowContext
from dataflow_playground.core.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def ctx(kafka_stack: Settings) -> Iterator[FlowContext]:
    c = FlowContext.create(kafka_stack, Console(stderr=True), seed=11, quiet=True)
    yield c
    c.stop_all()


def test_db_reader_down_loses_nothing_and_catches_up(ctx: FlowContext) -> None:
    r = run_db(ctx, 2000, fault_downtime_s=1.0)
    assert (r.received, r.lost, r.duplicated) == (2000, 0, 0)
    assert r.detail["outage"]["down_s"] >= 1.0


@pytest.mark.parametrize("kind", ["rest", "rpc"])
def test_service_down_is_seen_by_the_caller(ctx: FlowContext, kind: str) -> None:
    r = run_service(ctx, kind, 2000, batch=50, fault_downtime_s=1.5)  # type: ignore[arg-type]
    caller = r.detail["caller"]
    assert sum(caller["errors"].values()) > 0 and caller["retries"] > 0
    # Every event is accounted for: received, or given up by the caller.
    assert r.received + r.lost == 2000
    assert r.lost <= caller["gave_up_events"]
    assert r.detail["outage"]["down_s"] >= 1.5


def test_kafka_sink_killed_loses_and_doubles_nothing(ctx: FlowContext) -> None:
    r = kafka.run_consumer_down(ctx, 3000, downtime_s=1.5)
    assert (r.received, r.lost, r.duplicated) == (3000, 0, 0)
    assert r.detail["max_lag_during_outage"] > 0
    assert r.detail["consumed_total"] >= 3000
