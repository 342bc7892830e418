"""The Kafka reservoir: one pass over a real topic, k records back, never more than k held."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import typer
from kafka import KafkaProducer
from typer.testing import CliRunner

from dataflow_playground.app.train import sampling as lab
from dataflow_playground.app.train.sampling_cli import command


def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    futures = [producer.send(topic, key=str(i % 97).encode(), value=orjson.dumps({"event_id": i}))
               for i in range(n)]
    producer.flush(timeout=30)
    producer.close()
    for f in futures:
        f.get(timeout=30)


def test_kafka_reservoir_reads_the_topic_once_and_holds_at_most_k(
        bootstrap: str, topic_factory: Callable[..., str]) -> None:
    n, k = 3_000, 100
    topic = topic_factory(partitions=3)
    _produce(bootstrap, topic, n)

    reservoirs = [lab.Reservoir[Any](k, random.Random(s)) for s in range(4)]
    seen: set[tuple[int, int]] = set()
    stats = lab.TopicPass()

    def watched(records: Iterator[Any]) -> Iterator[Any]:
        for rec in records:
            assert all(len(r.items) <= k for r in reservoirs)  # memory O(k) at every record
            assert (rec.partition, rec.offset) not in seen  # nothing read twice
            seen.add((rec.partition, rec.offset))
            yield rec

    lab.drive_reservoirs(watched(lab.kafka_records(bootstrap, topic, stats)), reservoirs)

    assert stats.consumed == len(seen) == n == sum(stats.end_offsets.values())  # one whole pass
    assert len(stats.end_offsets) == 3
    for r in reservoirs:
        assert r.peak == k and len(r.items) == k
        ids = {orjson.loads(rec.value)["event_id"] for rec in r.items}
        assert len(ids) == k and ids <= set(range(n))
    assert len({frozenset((x.partition, x.offset) for x in r.items) for r in reservoirs}) == 4

    # The convenience wrapper gives the same kind of answer.
    again = lab.kafka_reservoir(bootstrap, topic, k, [random.Random(9)])
    assert len(again) == 1 and len(again[0]) == k


def test_lab_reads_the_reservoir_from_kafka_when_given_a_broker(bootstrap: str, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, ["--events", "3000", "--seeds", "3", "--sample-size", "100",
                                      "--bootstrap", bootstrap, "--results-dir", str(tmp_path),
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["reservoir"]["source"] == "kafka" and out["reservoir"]["consumed"] == 3_000
    assert out["reservoir"]["passes"] == 1
    assert "Kafka topic" in (tmp_path / "sampling.md").read_text()
