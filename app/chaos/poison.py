"""Poison records of every kind, in every compression codec, from a client outside the project.

confluent-kafka (librdkafka, not the project's kafka-python) writes, once per codec (none,
gzip, snappy, lz4, zstd), good events mixed with every kind of bad record: each broken-event
kind of the generator, plus what only a foreign client tends to send (an empty value, a
tombstone, binary garbage, JSON that is not an object, an oversized field). kcat, if on
PATH, adds one more batch. Two consumers read the topic: the Kafka -> DuckDB sink and a
stream worker. Pass: neither stops, every good event is stored, and each bad record is
dead-lettered once per consumer, on that consumer's own topic, with its stage and a reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaConsumer

from dataflow_playground.app.chaos.accounting import Outcome
from dataflow_playground.app.chaos.env import ChaosEnv, ChaosError, stop_process
from dataflow_playground.app.chaos.waiting import GroupPosition, wait_until
from dataflow_playground.consumers import kafka_to_duckdb
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.dead_letters import FEATURES_STAGE, SINK_STAGE, DeadLetterInfo, source_id
from dataflow_playground.core.kafka_codecs import CODECS
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.stream.process import WorkerProcess
from dataflow_playground.producers.generator import MALFORMED_KINDS, GeneratorConfig, wire_records
from dataflow_playground.storage.duckdb_store import EventStore

NAME = "poison"
CONDITION = "no consumer stops; each bad record dead-lettered once per consumer, with a reason"
GROUP = "chaos-poison-sink"
GOOD_PER_CODEC = 40


def foreign_poison(event: dict[str, Any]) -> dict[str, bytes | None]:
    """Bad records a foreign client may send, beyond the generator's broken events."""
    return {
        "empty_value": b"",
        "tombstone": None,
        "binary_garbage": bytes(range(256)),
        "json_array": b"[1, 2, 3]",
        "json_null": b"null",
        "oversized_field": orjson.dumps({**event, "currency": "Z" * 100_000}),
    }


def poison_set(seed: int) -> tuple[list[tuple[bytes, bytes]], dict[str, tuple[bytes, bytes | None]]]:
    """Distinct good records (``GOOD_PER_CODEC`` per codec), and one bad record of every kind
    (``kind -> (key, value)``)."""
    records = list(wire_records(GeneratorConfig(events=2 * GOOD_PER_CODEC * len(CODECS) + 100, seed=seed,
                                                malformed_rate=0.3)))
    bad: dict[str, tuple[bytes, bytes | None]] = {}
    for r in records:
        if r.malformed is not None and r.malformed not in bad:
            bad[r.malformed] = (r.key, r.value)
    missing = set(MALFORMED_KINDS) - set(bad)
    if missing:
        raise ChaosError(f"the generator gave no record of kind(s) {sorted(missing)}; raise the sample")
    good = [(r.key, r.value) for r in records if r.malformed is None][:GOOD_PER_CODEC * len(CODECS)]
    for kind, value in foreign_poison(orjson.loads(good[0][1])).items():
        bad[kind] = (b"poison", value)
    return good, bad


def _send_confluent(bootstrap: str, topic: str, codec: str, good: list[tuple[bytes, bytes]],
                    bad: dict[str, tuple[bytes, bytes | None]]) -> tuple[int, dict[str, str], list[str]]:
    """Send with confluent-kafka in ``codec``; (good acknowledged, bad source id -> kind, errors)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "all",
                         "enable.idempotence": True, "message.max.bytes": 2_000_000,
                         "client.id": f"chaos-confluent-{codec}"})
    acked_good = 0
    bad_sources: dict[str, str] = {}
    errors: list[str] = []

    def report(kind: str | None) -> Callable[[Any, Any], None]:
        def done(err: Any, msg: Any) -> None:
            nonlocal acked_good
            if err is not None:
                errors.append(f"{codec}/{kind or 'good'}: {err}")
            elif kind is None:
                acked_good += 1
            else:
                bad_sources[source_id(msg.topic(), msg.partition(), msg.offset())] = f"{codec}/{kind}"
        return done

    for i, (key, value) in enumerate(good):
        producer.produce(topic, key=key, value=value, on_delivery=report(None))
        kind, (bkey, bvalue) = list(bad.items())[i % len(bad)] if i < len(bad) else (None, (b"", b""))
        if kind is not None:
            producer.produce(topic, key=bkey, value=bvalue, on_delivery=report(kind))
    left = producer.flush(60)
    if left:
        errors.append(f"{codec}: {left} records not delivered within 60s")
    return acked_good, bad_sources, errors


def _send_kcat(kcat: str, bootstrap: str, topic: str, codec: str) -> str | None:
    """One bad line through kcat in ``codec``; None if it was sent, else the error."""
    proc = subprocess.run([kcat, "-P", "-b", bootstrap, "-t", topic, "-z", codec, "-X", "acks=all"],
                          input=b"kcat: not an event\n", capture_output=True, timeout=60, check=False)
    return None if proc.returncode == 0 else proc.stderr.decode(errors="replace")[:300]


def _dead_letters(bootstrap: str, topic: str, n: int) -> list[DeadLetterInfo]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10_000)
    try:
        out = []
        for m in consumer:
            out.append(DeadLetterInfo.from_headers(m.headers))
            if len(out) >= n and kafka_admin.topic_size(bootstrap, topic) <= len(out):
                break
        return out
    finally:
        consumer.close()


def run(base: Settings, quick: bool, say: Callable[[str], None], seed: int = 19) -> Outcome:
    out = Outcome(scenario=NAME, condition=CONDITION)
    good, bad = poison_set(seed)
    with ChaosEnv(base, NAME) as env:
        rid = uuid.uuid4().hex[:8]
        s = env.settings.model_copy(update={"topic": f"chaos-{rid}"})
        env.settings = s
        say("starting Kafka")
        env.start_kafka([kafka_admin.TopicSpec(s.topic, s.partitions),
                         kafka_admin.TopicSpec(s.sink_dead_letter_topic, 1),
                         kafka_admin.TopicSpec(s.features_dead_letter_topic, 1)])
        bad_sources: dict[str, str] = {}
        errors: list[str] = []
        for i, codec in enumerate(CODECS):
            say(f"confluent-kafka: {GOOD_PER_CODEC} good and {len(bad)} bad records, compression {codec}")
            mine = good[i * GOOD_PER_CODEC:(i + 1) * GOOD_PER_CODEC]
            acked, sources, errs = _send_confluent(s.bootstrap_servers, s.topic, codec, mine, bad)
            out.acknowledged += acked + len(sources)
            out.sent += len(mine) + len(bad)
            bad_sources.update(sources)
            errors += errs
        kcat = shutil.which("kcat") or shutil.which("kafkacat")
        if kcat:
            for codec in CODECS:
                err = _send_kcat(kcat, s.bootstrap_servers, s.topic, codec)
                out.sent += 1
                if err is None:
                    out.acknowledged += 1
                else:
                    errors.append(f"kcat/{codec}: {err}")
            out.notes.append(f"kcat ({kcat}) sent one bad line per codec")
        else:
            out.notes.append("kcat is not on PATH: only confluent-kafka was used as the outside client")
        out.unacknowledged = out.sent - out.acknowledged
        total = kafka_admin.topic_size(s.bootstrap_servers, s.topic)
        expected_bad = total - len(good)

        say("starting the sink and a stream worker")
        sink = env.spawn([sys.executable, "-m", kafka_to_duckdb.__name__, "--group", GROUP,
                          "--idle-timeout", "0"], "chaos-poison-sink")
        worker = WorkerProcess(s, s.topic, f"{s.topic}.features", s.features_dead_letter_topic,
                               env.folder / "online.sqlite", f"chaos-{rid}", engine=s.stream_engine)
        position = GroupPosition(s.bootstrap_servers, GROUP, s.topic)
        try:
            worker.start(timeout_s=120)
            wait_until(lambda: position.committed() >= total or sink.poll() is not None, 180,
                       "the sink reading every record")
            stats = worker.wait_drained(total, timeout_s=180)
            out.received = position.committed()
            alive = {"sink": sink.poll() is None, "features-worker": worker.alive}
        finally:
            position.close()
            worker.stop()
            stop_process(sink)
        if not alive["sink"]:
            out.notes.append("the sink stopped: " + env.log_tail("chaos-poison-sink", 5))
        sink_dl = _dead_letters(s.bootstrap_servers, s.sink_dead_letter_topic, expected_bad)
        feat_dl = _dead_letters(s.bootstrap_servers, s.features_dead_letter_topic, expected_bad)
        with EventStore(s.store_path, read_only=True) as store:
            out.stored, out.dead_lettered = store.count(), store.count_dead()
            out.duplicates = store.count_duplicates()
            reasons = store.dead_letter_reasons()
    want = set(bad_sources)
    per_consumer: dict[str, dict[str, Any]] = {}
    for name, stage, letters in (("sink", SINK_STAGE, sink_dl), ("features-worker", FEATURES_STAGE, feat_dl)):
        seen = [d.source for d in letters]
        per_consumer[name] = {
            "dead_letters": len(letters),
            "missing": sorted(bad_sources[x] for x in want - set(seen)),
            "twice": len(seen) - len(set(seen)),
            "wrong_stage": sum(d.stage != stage for d in letters),
            "without_reason": sum(not d.reason for d in letters),
        }
    out.lost = len(good) - out.stored
    out.extra.update({"codecs": list(CODECS), "bad_kinds": sorted(bad), "bad_records": len(want),
                      "alive": alive, "dead_letters": per_consumer, "sink_reasons": reasons,
                      "worker_counters": {k: stats.get(k, 0)
                                          for k in ("consumed", "processed", "dead_lettered")},
                      "send_errors": errors})
    out.condition_met = (all(alive.values()) and out.lost == 0 and not errors
                         and all(not c["missing"] and not c["twice"] and not c["wrong_stage"]
                                 and not c["without_reason"] for c in per_consumer.values()))
    out.notes.append(f"{len(want)} bad records ({len(bad)} kinds x {len(CODECS)} codecs) and "
                     f"{len(good)} good ones; dead letters read back from each "
                     "consumer's own topic")
    return out
