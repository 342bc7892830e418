"""An outside client (librdkafka, through confluent-kafka) puts each user on the same partition
as the project's producer when it uses the partitioner the Wire format section names, and on
another partition for most users with librdkafka's default: measured on a real broker."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer

from dataflow_playground.producers.to_kafka import make_producer

USERS = range(600)
PARTITIONS = 3


def _ours(bootstrap: str, topic: str) -> dict[int, int]:
    producer = make_producer(bootstrap)
    futures = {u: producer.send(topic, key=str(u).encode(), value=b"{}") for u in USERS}
    producer.flush(timeout=30)
    out = {u: f.get(timeout=30).partition for u, f in futures.items()}
    producer.close(timeout=10)
    return out


def _librdkafka(bootstrap: str, topic: str, **config: str) -> dict[int, int]:
    producer = Producer({"bootstrap.servers": bootstrap, **config})
    out: dict[int, int] = {}
    for u in USERS:
        def report(err: object, msg: object, u: int = u) -> None:
            assert err is None, err
            out[u] = msg.partition()  # type: ignore[attr-defined]
        producer.produce(topic, key=str(u).encode(), value=b"{}", on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0
    return out


def test_murmur2_random_matches_the_project_and_the_default_does_not(
        bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    ours = _ours(bootstrap, topic)
    assert set(ours.values()) == set(range(PARTITIONS))
    assert _librdkafka(bootstrap, topic, partitioner="murmur2_random") == ours
    default = _librdkafka(bootstrap, topic)  # consistent_random: CRC32 of the key
    moved = sum(default[u] != ours[u] for u in USERS) / len(USERS)
    print(f"librdkafka's default puts {moved:.1%} of {len(USERS)} users on another partition")
    assert moved > 0.5
