"""Small admin helpers over kafka-python: readiness, topics, consumer lag."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import Retrying, stop_after_delay, wait_fixed

from dataflow_playground.core.errors import StackError
from dataflow_playground.core.settings import Settings

log = logging.getLogger(__name__)


def admin(bootstrap: str, timeout_ms: int = 5000) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="playground-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def kafka_ready(bootstrap: str, timeout_ms: int = 3000) -> bool:
    """True when a metadata request is answered (not merely when the port opens)."""
    try:
        client = admin(bootstrap, timeout_ms)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(client.describe_cluster().get("brokers"))
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        client.close()


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int | None = None
    configs: tuple[tuple[str, str], ...] = ()  # other topic configs, e.g. (("cleanup.policy", "compact"),)

    def topic_configs(self) -> dict[str, str]:
        out = {"retention.ms": str(self.retention_ms)} if self.retention_ms else {}
        out.update(self.configs)
        return out


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet, wait until every partition of them all has a
    leader (:func:`wait_for_leaders`), and return the names created."""
    specs = list(specs)
    client = admin(bootstrap)
    try:
        existing = set(client.list_topics())
        todo = [s for s in specs if s.name not in existing]
        new = [
            NewTopic(s.name, s.partitions, 1, topic_configs=s.topic_configs())
            for s in todo
        ]
        if new:
            try:
                client.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won the race; fine
            except KafkaError as err:
                raise StackError(f"creating topics {[s.name for s in todo]} failed: {err}") from err
    finally:
        client.close()
    wait_for_leaders(bootstrap, [s.name for s in specs])
    return [s.name for s in todo]


def wait_for_leaders(bootstrap: str, topics: Iterable[str], timeout_s: float = 30.0) -> None:
    """Until every partition of ``topics`` has a leader (a topic just created has none for a moment).

    A consumer group formed in that moment is assigned nothing: its leader finds no partition
    metadata for the topic, and kafka-python asks again only at the next metadata refresh.
    """
    topics = sorted(set(topics))
    client = admin(bootstrap)
    try:
        for attempt in Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.1), reraise=True):
            with attempt:
                missing = [f"{t['name']}: {t['error_code']}" if t["error_code"] else
                           f"{t['name']}[{p['partition_index']}]"
                           for t in client.describe_topics(topics) for p in (t["partitions"] or [None])
                           if t["error_code"] or p is None or p["leader_id"] < 0]
                if missing:
                    raise StackError(f"partitions without a leader after {timeout_s:.0f}s: {missing}; "
                                     "is the broker healthy? (playground status)")
    finally:
        client.close()


def subscribe(consumer: KafkaConsumer, topics: list[str],
              listener: ConsumerRebalanceListener | None = None) -> None:
    """Subscribe a group member to ``topics``, and have their metadata before its first poll.

    The first ``poll()`` joins the group. A member that leads the group before its first
    metadata response assigns nobody anything ("No partition metadata for topic"), and
    kafka-python 3 was seen not to assign again for minutes once the metadata came (CI, and
    ``tests/core/test_kafka_admin_broker.py`` without this). Raises :class:`StackError` if a
    topic has no partitions.
    """
    if listener is None:
        consumer.subscribe(topics)
    else:
        consumer.subscribe(topics, listener=listener)
    empty = [t for t in topics if not consumer.partitions_for_topic(t)]
    if empty:
        raise StackError(f"no partitions found for topics {empty}; is the broker up and were they "
                         "created? (playground status)")


def list_topics(bootstrap: str) -> list[str]:
    client = admin(bootstrap)
    try:
        return list(client.list_topics())
    finally:
        client.close()


def delete_topics(bootstrap: str, names: list[str]) -> None:
    client = admin(bootstrap)
    try:
        client.delete_topics(names)
    except KafkaError as err:
        log.warning("could not delete topics %s: %s", names, err)
    finally:
        client.close()


def default_topics(settings: Settings) -> list[TopicSpec]:
    """What `playground up` / `playground topics` create: the input and each consumer's dead letters."""
    return [
        TopicSpec(settings.topic, settings.partitions, settings.retention_ms),
        TopicSpec(settings.sink_dead_letter_topic, 1, settings.retention_ms),
        TopicSpec(settings.features_dead_letter_topic, 1, settings.retention_ms),
    ]


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in ``topic`` not yet committed by ``group`` (uncommitted partitions count whole)."""
    ends = end_offsets(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        lag = 0
        for p, end in ends.items():
            committed = consumer.committed(TopicPartition(topic, p)) or 0
            lag += max(end - committed, 0)
        return lag
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str) -> int:
    """Records currently in ``topic`` (end minus beginning offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends, begins = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        return sum(ends[tp] - begins[tp] for tp in tps)
    finally:
        consumer.close()


def topic_retention_ms(bootstrap: str, topic: str) -> int | None:
    """``retention.ms`` as the broker reports it for ``topic``."""
    client = admin(bootstrap)
    try:
        # kafka-python 3 answers {"topic": {name: {config: {"value": ...}}}}.
        resp = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        value = resp["topic"][topic]["retention.ms"]["value"]
        return int(value)
    except Exception:  # a display nicety: never fail a run over it
        return None
    finally:
        client.close()
