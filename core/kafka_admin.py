"""Small admin helpers over kafka-python: readiness, topics, consumer lag."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import Retrying, stop_after_delay, wait_fixed

from dataflow_playground.core import kafka_native
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


def broker_serving(bootstrap: str, node_id: int, timeout_ms: int = 3000) -> bool:
    """True when ``bootstrap`` answers and the cluster counts broker ``node_id`` as live (not fenced).

    A node of a cluster is healthy by this: its own listener answers, and the controller has
    its registration (a node that lost the quorum or is being shut down is fenced).
    """
    try:
        client = admin(bootstrap, timeout_ms)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        brokers = client.describe_cluster().get("brokers") or []
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        client.close()
    return any(b["broker_id"] == node_id and not b.get("is_fenced") for b in brokers)


@dataclass(frozen=True)
class BrokerState:
    node_id: int
    host: str
    port: int
    fenced: bool  # registered but not serving (its heartbeats stopped, or shutting down)
    leads: int  # partitions it leads
    under_replicated: int  # of those, with fewer in-sync replicas than replicas


@dataclass(frozen=True)
class ClusterHealth:
    """What a Kafka cluster says about itself (metadata and the KRaft quorum)."""

    brokers: list[BrokerState]  # registered brokers, fenced ones included
    controller_id: int | None  # the active controller (leader of the metadata quorum)
    voters: list[int]  # the controllers in the quorum
    partitions: int
    under_replicated: int  # partitions with fewer in-sync replicas than replicas
    offline: int  # partitions without a leader

    def broker(self, node_id: int) -> BrokerState | None:
        return next((b for b in self.brokers if b.node_id == node_id), None)


def cluster_health(bootstrap: str, timeout_ms: int = 3000, attempts: int = 3) -> ClusterHealth | None:
    """Brokers, active controller and partition replication of the cluster; None if unreachable.

    Under-replicated is Kafka's own measure: a partition whose in-sync replicas are fewer than
    its replicas (every topic, internal ones included). Per broker it counts the partitions the
    broker leads, as its ``UnderReplicatedPartitions`` metric does. Asked again (``attempts``)
    when a request fails: right after a broker dies the client may still pick it.
    """
    for _ in range(attempts):
        if (health := _cluster_health(bootstrap, timeout_ms)) is not None:
            return health
    return None


def _cluster_health(bootstrap: str, timeout_ms: int) -> ClusterHealth | None:
    try:
        client = admin(bootstrap, timeout_ms)
    except (KafkaError, OSError, ValueError):
        return None
    try:
        cluster = client.describe_cluster()
        topics = client.describe_topics()
        try:
            quorum = client.describe_metadata_quorum()
            [part] = [p for t in quorum["topics"] for p in t["partitions"]]
            controller: int | None = part["leader_id"] if part["leader_id"] >= 0 else None
            voters = sorted(v["replica_id"] for v in part["current_voters"])
        except (KafkaError, KeyError, ValueError):  # a broker too old for DescribeQuorum
            controller, voters = None, []
    except (KafkaError, OSError, ValueError):
        return None
    finally:
        client.close()
    parts = [p for t in topics if not t["error_code"] for p in t["partitions"] or []]
    urp = [p for p in parts if len(p["isr_nodes"]) < len(p["replica_nodes"])]
    brokers = [BrokerState(node_id=b["broker_id"], host=b["host"], port=b["port"],
                           fenced=bool(b.get("is_fenced")),
                           leads=sum(1 for p in parts if p["leader_id"] == b["broker_id"]),
                           under_replicated=sum(1 for p in urp if p["leader_id"] == b["broker_id"]))
               for b in sorted(cluster.get("brokers") or [], key=lambda b: b["broker_id"])]
    return ClusterHealth(brokers=brokers, controller_id=controller, voters=voters, partitions=len(parts),
                         under_replicated=len(urp), offline=sum(1 for p in parts if p["leader_id"] < 0))


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int | None = None
    configs: tuple[tuple[str, str], ...] = ()  # other topic configs, e.g. (("cleanup.policy", "compact"),)
    # Copies of each partition; -1 = the broker's default.replication.factor (1 on the single
    # node, 3 on the native cluster: core/kafka_native.py).
    replication: int = -1

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
            NewTopic(s.name, s.partitions, s.replication, topic_configs=s.topic_configs())
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


def group_ids(client: KafkaAdminClient) -> list[str]:
    """The consumer groups the broker knows (kafka-python lists them as tuples or as dicts)."""
    return [g[0] if isinstance(g, tuple) else g["group_id"] for g in client.list_groups()]


def list_groups(bootstrap: str) -> list[str]:
    client = admin(bootstrap)
    try:
        return group_ids(client)
    finally:
        client.close()


def delete_groups(bootstrap: str, groups: list[str]) -> None:
    """Delete consumer groups, best effort: a group with members still registered stays, and
    expires on its own."""
    try:
        client = admin(bootstrap)
        try:
            client.delete_groups(groups)
        finally:
            client.close()
    except KafkaError as err:
        log.debug("could not delete groups %s: %s", groups, err)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    client = admin(bootstrap)
    try:
        client.delete_topics(names)
    except KafkaError as err:
        log.warning("could not delete topics %s: %s", names, err)
    finally:
        client.close()


def default_topics(settings: Settings) -> list[TopicSpec]:
    """What `playground up` / `playground topics create` make: the input and each consumer's dead letters.

    With three brokers each partition has three copies and an ``acks=all`` write needs two in
    sync (``min.insync.replicas``), so an acknowledged record survives the loss of a broker.
    """
    configs: tuple[tuple[str, str], ...]
    if settings.brokers == 3:
        replication, configs = 3, (("min.insync.replicas", str(kafka_native.CLUSTER_MIN_INSYNC)),)
    else:
        replication, configs = 1, ()
    return [
        TopicSpec(settings.topic, settings.partitions, settings.retention_ms, configs, replication),
        TopicSpec(settings.sink_dead_letter_topic, 1, settings.retention_ms, configs, replication),
        TopicSpec(settings.features_dead_letter_topic, 1, settings.retention_ms, configs, replication),
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
