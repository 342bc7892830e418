"""One of three brokers SIGKILLed while a producer writes with ``acks=all``, then restarted.

The topic has three replicas and ``min.insync.replicas=2``, so with one broker gone every
write still needs two copies before it is acknowledged. The producer is librdkafka
(confluent-kafka), idempotent: its statistics count the request retries and its delivery
reports the errors. The killed broker is the leader of partition 0, so a failover must
happen; failover time = kill to every partition having a live leader again.
Pass: 0 acknowledged records lost (read back from the topic), none doubled.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from kafka.admin import NewTopic
from kafka.errors import KafkaError

from dataflow_playground.app.chaos.accounting import Outcome
from dataflow_playground.app.chaos.cluster import Cluster
from dataflow_playground.app.chaos.env import ChaosEnv, ChaosError
from dataflow_playground.app.chaos.topic_read import event_id_counts
from dataflow_playground.app.chaos.waiting import wait_until
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, wire_records

NAME = "cluster-failover"
CONDITION = "0 acknowledged records lost or doubled with 1 of 3 brokers killed (acks=all)"
BROKERS = 3
TOPIC = "chaos-cluster"


class ConfluentLoad(threading.Thread):
    """Paced, idempotent ``acks=all`` sends; acknowledgements, errors and retries counted."""

    def __init__(self, bootstrap: str, topic: str, records: list[Any], rate: float) -> None:
        super().__init__(name="chaos-confluent", daemon=True)
        self.bootstrap, self.topic, self.records, self.rate = bootstrap, topic, records, rate
        self.sent = 0
        self.acked_ids: set[int] = set()
        self.acked = 0
        self.errors: Counter[str] = Counter()
        self.ack_times: list[float] = []
        self.retries = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def _stats(self, raw: str) -> None:
        brokers = json.loads(raw).get("brokers", {}).values()
        self.retries = max(self.retries, sum(int(b.get("txretries", 0)) for b in brokers))

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                                 "enable.idempotence": True, "linger.ms": 10,
                                 "statistics.interval.ms": 500, "stats_cb": self._stats,
                                 "client.id": "chaos-cluster-producer",
                                 "log_level": 2})  # connection errors while a node is down are expected
            t0 = time.monotonic()
            for i, rec in enumerate(self.records):
                if self._stop_event.is_set():
                    break
                if self.rate and i % 50 == 0:
                    ahead = t0 + i / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                while True:
                    try:
                        producer.produce(self.topic, key=rec.key, value=rec.value,
                                         on_delivery=self._report(rec.event_id))
                        break
                    except BufferError:  # the local queue is full while a leader is missing
                        producer.poll(0.1)
                self.sent += 1
                producer.poll(0)
            left = producer.flush(120)
            if left:
                self.errors["not delivered within 120s of the end"] += left
            producer.poll(0.6)  # one more statistics report
        except BaseException as err:
            self.error = err

    def _report(self, event_id: int | None) -> Callable[[Any, Any], None]:
        def done(err: Any, _msg: Any) -> None:
            with self._lock:
                if err is not None:
                    self.errors[str(err.name())] += 1
                    return
                self.acked += 1
                self.ack_times.append(time.monotonic())
                if event_id is not None:
                    self.acked_ids.add(event_id)
        return done


def _partitions(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions as the cluster describes them; none while it cannot answer."""
    try:
        client = kafka_admin.admin(bootstrap)
    except (KafkaError, OSError, ValueError):
        return []
    try:
        [desc] = client.describe_topics([topic])
        return list(desc["partitions"] or [])
    except (KafkaError, OSError, ValueError):
        return []
    finally:
        client.close()


def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    return {p["partition_index"]: p["leader_id"] for p in _partitions(bootstrap, topic)}


def _isr_sizes(bootstrap: str, topic: str) -> list[int]:
    return [len(p["isr_nodes"]) for p in _partitions(bootstrap, topic)] or [0]


def run(base: Settings, quick: bool, say: Callable[[str], None], seed: int = 23) -> Outcome:
    events, rate, down_s = (20_000, 2_000.0, 5.0) if quick else (300_000, 5_000.0, 20.0)
    out = Outcome(scenario=NAME, condition=CONDITION)
    with ChaosEnv(base, NAME) as env:
        cluster = Cluster(env, BROKERS)
        say(f"starting {BROKERS} Kafka nodes")
        cluster.start()
        bootstrap = cluster.bootstrap
        client = kafka_admin.admin(bootstrap)
        try:
            client.create_topics([NewTopic(TOPIC, 3, BROKERS, topic_configs={"min.insync.replicas": "2"})])
        finally:
            client.close()
        kafka_admin.wait_for_leaders(bootstrap, [TOPIC])
        records = list(wire_records(GeneratorConfig(events=events, seed=seed)))
        load = ConfluentLoad(bootstrap, TOPIC, records, rate)
        load.start()
        try:
            wait_until(lambda: load.acked >= events // 3, 300, "a third of the records acknowledged")
            victim_node = _leaders(bootstrap, TOPIC)[0]
            victim = cluster.nodes[cluster.node_ids.index(victim_node)]
            env.kill(victim)
            t_kill = time.monotonic()
            say(f"{victim.name} (node {victim_node}, leader of partition 0) SIGKILLed at "
                f"{load.acked:,} acknowledged")
            def failed_over() -> bool:
                leaders = _leaders(bootstrap, TOPIC)
                return bool(leaders) and all(n not in (victim_node, -1) for n in leaders.values())

            wait_until(failed_over, 120, "a new leader for every partition", interval_s=0.05)
            failover_s = time.monotonic() - t_kill
            out.recovery_s.append(round(failover_s, 2))
            say(f"every partition led by a live broker after {failover_s:.1f}s")
            time.sleep(max(0.0, down_s - (time.monotonic() - t_kill)))
            restart_s = env.start(victim)
            wait_until(lambda: min(_isr_sizes(bootstrap, TOPIC)) == BROKERS, 180,
                       f"{victim.name} back in sync")
            rejoin_s = time.monotonic() - t_kill
            say(f"{victim.name} restarted ({restart_s:.1f}s), back in sync {rejoin_s:.1f}s after the kill")
            load.join(timeout=600)
            if load.error:
                raise load.error
            if load.is_alive():
                raise ChaosError("the producer did not finish within 600s")
        finally:
            load.stop()
        counts, unreadable = event_id_counts(bootstrap, TOPIC)
    out.sent, out.acknowledged = load.sent, load.acked
    out.unacknowledged = sum(load.errors.values())
    out.received = sum(counts.values()) + unreadable
    out.stored = len(counts)
    out.duplicates = out.received - out.stored
    out.duplicated = sum(1 for n in counts.values() if n > 1)
    out.lost = len(load.acked_ids - set(counts))
    after = [t for t in load.ack_times if t > t_kill]
    stall = min(after) - t_kill if after else None
    out.extra.update({"brokers": BROKERS, "killed": victim.name, "failover_s": round(failover_s, 2),
                      "first_ack_after_kill_s": round(stall, 2) if stall is not None else None,
                      "rejoin_s": round(rejoin_s, 2), "produce_errors": dict(load.errors),
                      "retries": load.retries})
    out.condition_met = out.lost == 0 and out.duplicated == 0
    out.notes.append(f"failover {failover_s:.1f}s (kill to a live leader for every partition); "
                     f"{sum(load.errors.values()):,} produce errors, {load.retries:,} request retries "
                     "(librdkafka statistics)")
    return out

