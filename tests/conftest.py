"""Shared fixtures: a replayable seed, the Hypothesis profiles and the session's real broker.

The broker (KRaft, native) is started with `playground up` the first time a test asks for
``kafka_stack`` (directly or through ``bootstrap`` / ``topic_factory``); such tests are marked
``kafka`` automatically, so ``pytest -m "not kafka"`` runs without one. The stack runs in a
temporary data folder on free ports; every test gets throwaway topics (uuid names). At the
end `playground down` must leave none of the recorded processes alive, or the session errors.
"""

from __future__ import annotations

import os
import random
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from dataflow_playground.app import stack
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings, get_settings
from tests.helpers import free_ports, run_cli

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# CI runs a fixed, bounded search: the same examples every run, nothing replayed from a
# local .hypothesis/ database, no deadline to trip on a loaded machine. Locally the search is
# random and wider (HYPOTHESIS_PROFILE=ci replays exactly what CI runs). The ``seed`` fixture
# follows the same profile: fixed per test under "ci", random under "dev".
hypothesis_settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=50, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("dev", max_examples=100, deadline=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
hypothesis_settings.load_profile(PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A per-test seed, printed so a failure can be replayed with PLAYGROUND_TEST_SEED.

    Under the "ci" profile it is fixed per test (a CRC-32 of the test's id), so CI runs the
    same data every time; under "dev" it is random, so local runs keep exploring.
    """
    if replay := os.environ.get("PLAYGROUND_TEST_SEED"):
        value = int(replay)
    elif PROFILE == "ci":
        value = zlib.crc32(request.node.nodeid.encode()) & 0x7FFFFFFF
    else:
        value = random.randrange(2**31)
    print(f"\n[{request.node.name}] seed={value} (replay: PLAYGROUND_TEST_SEED={value})")
    return value


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Each test reads the settings its own environment gives (``get_settings`` is cached)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment (PLAYGROUND_* variables) that points every command at the test stack."""
    data = tmp_path_factory.mktemp("stack")
    kafka, controller, rest, rpc, dashboard = free_ports(5)
    env = dict(os.environ)
    env.update({
        "PLAYGROUND_DATA_DIR": str(data / "data"),
        "PLAYGROUND_RESULTS_DIR": str(data / "results"),
        "PLAYGROUND_KAFKA_PORT": str(kafka),
        "PLAYGROUND_KAFKA_CONTROLLER_PORT": str(controller),
        "PLAYGROUND_REST_PORT": str(rest),
        "PLAYGROUND_RPC_PORT": str(rpc),
        "PLAYGROUND_DASHBOARD_PORT": str(dashboard),
        "PLAYGROUND_KAFKA_HEAP": "384m",
    })
    return env



@pytest.fixture(scope="session")
def kafka_stack(stack_env: dict[str, str]) -> Iterator[Settings]:
    settings = Settings(
        data_dir=Path(stack_env["PLAYGROUND_DATA_DIR"]),
        results_dir=Path(stack_env["PLAYGROUND_RESULTS_DIR"]),
        kafka_port=int(stack_env["PLAYGROUND_KAFKA_PORT"]),
        kafka_controller_port=int(stack_env["PLAYGROUND_KAFKA_CONTROLLER_PORT"]),
        rest_port=int(stack_env["PLAYGROUND_REST_PORT"]),
        rpc_port=int(stack_env["PLAYGROUND_RPC_PORT"]),
        dashboard_port=int(stack_env["PLAYGROUND_DASHBOARD_PORT"]),
        kafka_heap="384m",
    )
    up = run_cli(stack_env, "up")
    assert up.returncode == 0, f"playground up failed:\n{up.stdout}\n{up.stderr}"
    pids = {comp.name: rec.pid for comp in stack.COMPONENTS
            if (rec := stack.read_pid(settings, comp.name)) is not None}
    assert "kafka" in pids, up.stdout
    try:
        yield settings
    finally:
        down = run_cli(stack_env, "down")
        leftover = [f"{n}={p}" for n, p in pids.items() if psutil.pid_exists(p)
                    and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        for pid in pids.values():  # last resort, only our own recorded PIDs
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()
        assert down.returncode == 0, down.stdout + down.stderr
        assert not leftover, f"playground down left processes behind: {leftover}"


@pytest.fixture
def bootstrap(kafka_stack: Settings) -> str:
    return kafka_stack.bootstrap_servers


@pytest.fixture
def topic_factory(bootstrap: str) -> Iterator[Callable[..., str]]:
    """Create throwaway topics named ``t-<uuid>``; deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 3, prefix: str = "t", retention_ms: int | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        kafka_admin.ensure_topics(bootstrap, [kafka_admin.TopicSpec(name, partitions, retention_ms)])
        created.append(name)
        return name

    yield make
    if created:
        kafka_admin.delete_topics(bootstrap, created)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The one SparkSession of a test run (local[2], loopback, UI off), stopped with its JVM.
    While it runs, ``spark_session()`` on local[2] (the backfill's) lends it instead."""
    from pyspark import SparkContext

    from dataflow_playground.features.batch_spark import SparkConfig, spark_session

    with spark_session(SparkConfig(master="local[2]", driver_memory="1g", shuffle_partitions=4)) as session:
        jvm = SparkContext._gateway.proc.pid  # type: ignore[union-attr]
        yield session
    assert not psutil.pid_exists(jvm) or psutil.Process(jvm).status() == psutil.STATUS_ZOMBIE, (
        f"the Spark JVM (pid {jvm}) outlived its session")
