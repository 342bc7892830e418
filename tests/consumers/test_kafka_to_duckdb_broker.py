"""Kafka -> DuckDB against the real broker: exactly the sent ids, even across crashes."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from kafka import KafkaConsumer

from dataflow_playground.consumers import kafka_to_duckdb
from dataflow_playground.consumers.kafka_to_duckdb import CRASH_AFTER_WRITES_ENV, KafkaToDuckDB, SinkStats
from dataflow_playground.core.dead_letters import DeadLetterInfo
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, encode_event, wire_records
from dataflow_playground.producers.to_kafka import make_producer, produce
from dataflow_playground.storage.duckdb_store import EventStore

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, cfg: GeneratorConfig) -> tuple[set[int], int]:
    records = list(wire_records(cfg))
    producer = make_producer(bootstrap)
    stats = produce(producer, topic, ((r.key, r.value) for r in records))
    producer.close()
    assert stats.failed == 0, stats.errors
    good = {r.event_id for r in records if r.event_id is not None}
    return good, len(records) - len(good)


def _sink_cmd(topic: str, group: str, db: Path, idle: float = 4.0) -> list[str]:
    return [sys.executable, "-m", kafka_to_duckdb.__name__, "--topic", topic, "--group", group,
            "--db", str(db), "--idle-timeout", str(idle), "--max-poll-records", "500",
            "--write-batch", "500"]


def _store_ids(db: Path) -> tuple[int, int, set[int]]:
    with EventStore(db) as store:
        return store.count(), store.duplicate_ids(), store.event_ids()


def test_sigkill_mid_stream_loses_and_doubles_nothing(
        kafka_stack: Settings, stack_env: dict[str, str], topic_factory: Callable[..., str],
        tmp_path: Path, seed: int) -> None:
    topic = topic_factory(partitions=3)
    sent, _ = _produce(kafka_stack.bootstrap_servers, topic, GeneratorConfig(events=20_000, seed=seed))
    db = tmp_path / "sink.duckdb"
    proc = subprocess.Popen(_sink_cmd(topic, "g-kill", db), env=stack_env, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    consumed = 0
    for line in proc.stdout:
        if line.startswith("committed"):
            consumed = int(line.split()[1].split("=")[1])
            if consumed >= 5_000:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 5_000 <= consumed < 20_000, "the kill must land mid-stream"

    rerun = subprocess.run(_sink_cmd(topic, "g-kill", db), env=stack_env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    rows, dups, ids = _store_ids(db)
    assert (rows, dups) == (20_000, 0)
    assert ids == sent


def test_crash_between_write_and_commit_is_deduplicated(
        kafka_stack: Settings, stack_env: dict[str, str], topic_factory: Callable[..., str],
        tmp_path: Path, seed: int) -> None:
    topic = topic_factory(partitions=2)
    sent, _ = _produce(kafka_stack.bootstrap_servers, topic, GeneratorConfig(events=6_000, seed=seed))
    db = tmp_path / "crash.duckdb"
    crash = subprocess.run(_sink_cmd(topic, "g-crash", db), env={**stack_env, CRASH_AFTER_WRITES_ENV: "3"},
                           capture_output=True, text=True, timeout=120, check=False)
    assert crash.returncode == 137, crash.stdout + crash.stderr
    rows_after_crash, _, _ = _store_ids(db)
    assert rows_after_crash > 0

    rerun = subprocess.run(_sink_cmd(topic, "g-crash", db), env=stack_env, capture_output=True,
                           text=True, timeout=120, check=False)
    done = rerun.stdout.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in done.split()[1:])
    # Batches 1-2 were committed; batch 3 was written but not committed, so the rerun
    # consumes it again (consumed > stored) and stores none of it twice.
    assert int(fields["stored"]) == 6_000 - rows_after_crash
    assert 0 < int(fields["consumed"]) - int(fields["stored"]) <= 2 * 500
    # The redelivered batch is recognised as such: no event_id was reused, so no duplicates.
    assert (fields["duplicates"], fields["store_duplicates"]) == ("0", "0")
    rows, dups, ids = _store_ids(db)
    assert (rows, dups) == (6_000, 0)
    assert ids == sent


def test_dead_letters_balance_and_good_records_unaffected(
        kafka_stack: Settings, topic_factory: Callable[..., str], tmp_path: Path, seed: int) -> None:
    topic = topic_factory(partitions=3)
    settings = kafka_stack.model_copy(update={"sink_dead_letter_topic": topic_factory(partitions=1)})
    n = 3_000
    good, bad = _produce(settings.bootstrap_servers, topic,
                         GeneratorConfig(events=n, seed=seed, malformed_rate=0.2))
    assert bad > 300
    with EventStore(tmp_path / "dlq.duckdb") as store:
        sink = KafkaToDuckDB(settings, store, group="g-dlq", topic=topic)
        stats = sink.run(max_events=n, idle_timeout_s=20)
        sink.close()
        assert stats.consumed == n
        assert store.count() + store.count_dead() == n
        assert store.count_dead() == bad
        assert store.event_ids() == good
        reasons = store.dead_letter_reasons()
    assert {"amount", "user_id", "<record>", "currency", "ts"} <= set(reasons)

    dlq = KafkaConsumer(settings.sink_dead_letter_topic, bootstrap_servers=settings.bootstrap_servers,
                        auto_offset_reset="earliest", consumer_timeout_ms=5000)
    messages = list(dlq)
    dlq.close()
    assert len(messages) == bad
    infos = [DeadLetterInfo.from_headers(m.headers) for m in messages]
    assert all(i.reason and i.stage == "sink" and i.source.startswith(f"kafka:{topic}:") for i in infos)


def test_cli_status_and_idempotent_up(kafka_stack: Settings, stack_env: dict[str, str]) -> None:
    from tests.helpers import run_cli

    status = run_cli(stack_env, "status")
    assert status.returncode == 0, status.stdout
    assert "kafka" in status.stdout and "healthy" in status.stdout
    assert "unhealthy" not in status.stdout

    from dataflow_playground.app import stack

    before = stack.read_pid(kafka_stack, "kafka")
    again = run_cli(stack_env, "up")
    assert again.returncode == 0 and "already running" in again.stdout
    after = stack.read_pid(kafka_stack, "kafka")
    assert before is not None and after is not None and before.pid == after.pid
    ours = [p for p in psutil.process_iter(["cmdline"])
            if "kafka.Kafka" in (p.info["cmdline"] or [])
            and any(str(kafka_stack.run_dir.resolve()) in arg for arg in p.info["cmdline"])]
    assert len(ours) == 1, "a second broker was started"


def test_demo_runs_against_the_stack(kafka_stack: Settings, stack_env: dict[str, str]) -> None:
    from tests.helpers import run_cli

    # The tour's other lessons at their smallest (tests/app/test_tour.py covers the whole tour).
    out = run_cli(stack_env, "demo", "--events", "3000", "--malformed-rate", "0.05", "--flow-events", "100",
                  "--parity-events", "100", "--format-rows", "100", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "balanced" in out.stdout
    import json

    doc = json.loads((kafka_stack.results_dir / "demo.json").read_text())
    s = doc["summary"]
    assert s["rows_stored"] + s["dead_letters"] == 3000 and s["duplicates"] == 0
    assert (kafka_stack.results_dir / "demo.md").read_text().count("|") > 10
    assert (kafka_stack.results_dir / "demo.png").stat().st_size > 1000


def test_reused_event_id_is_a_counted_duplicate_and_nothing_is_lost(
        kafka_stack: Settings, stack_env: dict[str, str], topic_factory: Callable[..., str],
        tmp_path: Path, seed: int) -> None:
    from kafka import KafkaProducer

    from dataflow_playground.producers.generator import generate_events
    from tests.helpers import run_cli

    topic = topic_factory(partitions=3)
    bootstrap = kafka_stack.bootstrap_servers
    events = generate_events(GeneratorConfig(events=200, seed=seed))
    first, later = events[5], events[9]
    # Same event_id and key (so after the original, in its partition), another payload.
    reused_now = {**first, "amount": float(first["amount"]) + 1.0}  # type: ignore[arg-type]
    reused_later = {**later, "merchant_id": int(later["merchant_id"]) + 1}  # type: ignore[call-overload]

    def send(batch: list[dict[str, object]]) -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for e in batch:
            producer.send(topic, key=str(e["user_id"]).encode(), value=encode_event(e)).get(timeout=30)
        producer.close()

    def sink_run(max_events: int) -> SinkStats:
        with EventStore(db) as store:
            sink = KafkaToDuckDB(kafka_stack, store, group="g-dup", topic=topic)
            try:
                return sink.run(max_events=max_events, idle_timeout_s=15)
            finally:
                sink.close()

    db = tmp_path / "dup.duckdb"
    send([*events, reused_now])
    run1 = sink_run(len(events) + 1)
    assert (run1.consumed, run1.stored, run1.dead_lettered, run1.duplicates) == (201, 200, 0, 1)
    # A later run (a restarted sink) meets a reuse of an id stored in an earlier run.
    send([reused_later])
    run2 = sink_run(1)
    assert (run2.consumed, run2.stored, run2.duplicates) == (1, 0, 1)

    with EventStore(db, read_only=True) as store:
        assert store.event_ids() == {int(e["event_id"]) for e in events}  # type: ignore[call-overload]
        assert store.count() == 200 and store.duplicate_ids() == 0
        kept = {d.event_id: d.payload for d in store.duplicates()}
        stored = dict(store.conn.execute("SELECT event_id, amount FROM events WHERE event_id IN (?, ?)",
                                         [first["event_id"], later["event_id"]]).fetchall())
    # Nothing lost: the first record of each id is stored, each reuse is kept aside whole.
    assert kept == {first["event_id"]: encode_event(reused_now),
                    later["event_id"]: encode_event(reused_later)}
    assert stored == {first["event_id"]: first["amount"], later["event_id"]: later["amount"]}

    status = run_cli({**stack_env, "PLAYGROUND_DUCKDB_PATH": str(db)}, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "200 events, 0 dead letters, 2 duplicates" in status.stdout, status.stdout
