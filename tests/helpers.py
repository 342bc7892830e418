"""Helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from dataflow_playground.app.stack import free_ports as free_ports  # shared with the chaos suite
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import FEATURES
from dataflow_playground.features.online_store import OnlineStoreReader, event_time_frontier
from dataflow_playground.features.parity import compare


def sigint_as_from_a_terminal() -> None:
    """``preexec_fn`` for a child a test stops with SIGINT: the default disposition, as a terminal
    gives it. A shell without job control starts background commands with SIGINT ignored; the
    test run and its children inherit that, and Python leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dataflow_playground.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def produce_each_codec(bootstrap: str, topic: str, per_codec: int, seed: int) -> dict[str, set[int]]:
    """Produce ``per_codec`` valid events with each Kafka codec in turn; the event ids by codec.

    One plain kafka-python producer per codec (``compression_type``), so the topic holds
    batches of every kind; the broker keeps each producer's codec (``compression.type=producer``).
    Events are in event-time order across the codecs, so stream engines see them in order.
    """
    from kafka import KafkaProducer

    from dataflow_playground.core.kafka_codecs import CODECS
    from dataflow_playground.producers.generator import GeneratorConfig, wire_records

    records = list(wire_records(GeneratorConfig(events=per_codec * len(CODECS), seed=seed)))
    by_codec: dict[str, set[int]] = {}
    for i, codec in enumerate(CODECS):
        chunk = records[i * per_codec:(i + 1) * per_codec]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                 compression_type=None if codec == "none" else codec)
        futures = [producer.send(topic, key=r.key, value=r.value) for r in chunk]
        producer.flush(timeout=30)
        producer.close()
        for f in futures:
            f.get(timeout=30)  # raises the delivery error, if any
        by_codec[codec] = {r.event_id for r in chunk if r.event_id is not None}
    return by_codec


def missing_by_codec(expected: dict[str, set[int]], got: set[int]) -> dict[str, int]:
    """How many of each codec's events are not in ``got`` (all zeros when nothing is lost)."""
    return {codec: len(ids - got) for codec, ids in expected.items()}


def fresh_event_time_ms(settings: Settings) -> int:
    """An event time for events sent to the session stack's shared topic: after the wall clock
    and after every event its features worker has seen, so none of them is late, whatever
    other tests sent before."""
    return max(int(time.time() * 1000), event_time_frontier(settings)) + 60_000


def poll_get(url: str, done: Callable[[httpx.Response], bool], what: str, timeout_s: float = 60
             ) -> httpx.Response:
    """GET ``url`` until ``done`` accepts the answer; fail naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        resp = httpx.get(url, timeout=5)
        if done(resp):
            return resp
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f}s; last answer {resp.text}"
        time.sleep(0.2)


def assert_stream_equals_batch(batch: BatchFeatures, values: dict[int, dict[str, object]],
                               store: Path) -> None:
    """Per-event stream values and the online store at ``store`` equal batch SQL (0 mismatches)."""
    training = batch.training_table().to_pylist()
    report = compare(((r["event_id"], r) for r in training), values)
    assert {n: p.mismatches for n, p in report.items()} == dict.fromkeys(report, 0)
    reader = OnlineStoreReader(store)
    online = reader.all()
    reader.close()
    snapshot = batch.snapshot()
    for f in FEATURES:
        rows = [(k, v) for k, v in snapshot.items() if k[0] == f.entity.name]
        assert compare(rows, online, features=(f,))[f.name].mismatches == 0, f.name
