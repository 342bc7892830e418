"""`playground up --brokers 3`: three KRaft nodes; losing one of them loses no acknowledged record.

The test runs its own cluster (kafka, kafka-2, kafka-3; none of the services) on free ports in
a temporary folder, through the CLI as a user would: `up --brokers 3 --kafka-only`, `status
--json`, `down`. Between them it SIGKILLs the node leading a partition of the project's topic
(by the PID in its PID file), produces with ``acks=all`` while the cluster fails over, and reads
every record back. At the end no JVM of the test's folder may be left.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from dataflow_playground.app import stack, stack_settings
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from tests.helpers import free_ports, run_cli

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
NODES = ("kafka", "kafka-2", "kafka-3")
RECORDS = 2_000


def _env(tmp_path: Path) -> tuple[dict[str, str], Settings]:
    k1, c1, k2, c2, k3, c3, rest, rpc, dash = free_ports(9)
    env = {**os.environ,
           "PLAYGROUND_DATA_DIR": str(tmp_path / "data"), "PLAYGROUND_RESULTS_DIR": str(tmp_path / "results"),
           "PLAYGROUND_KAFKA_PORT": str(k1), "PLAYGROUND_KAFKA_CONTROLLER_PORT": str(c1),
           "PLAYGROUND_KAFKA_2_PORT": str(k2), "PLAYGROUND_KAFKA_2_CONTROLLER_PORT": str(c2),
           "PLAYGROUND_KAFKA_3_PORT": str(k3), "PLAYGROUND_KAFKA_3_CONTROLLER_PORT": str(c3),
           "PLAYGROUND_REST_PORT": str(rest), "PLAYGROUND_RPC_PORT": str(rpc),
           "PLAYGROUND_DASHBOARD_PORT": str(dash), "PLAYGROUND_KAFKA_HEAP": "384m"}
    env.pop("PLAYGROUND_BROKERS", None)  # `up --brokers 3` says it; status and down remember it
    env.pop("PLAYGROUND_BOOTSTRAP_SERVERS", None)
    settings = Settings(data_dir=tmp_path / "data", brokers=3, kafka_port=k1, kafka_controller_port=c1,
                        kafka_2_port=k2, kafka_2_controller_port=c2, kafka_3_port=k3,
                        kafka_3_controller_port=c3, rest_port=rest, rpc_port=rpc, dashboard_port=dash)
    return env, settings


def _status(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = run_cli(env, "status", "--json", timeout=60)
    assert out.returncode in (0, 1), out.stderr  # 1: the services are not running (not started)
    return {row["name"]: row for row in json.loads(out.stdout)}


def _our_jvms(folder: Path) -> list[psutil.Process]:
    """Java processes whose command line points into ``folder`` (their server.properties)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "java" in (proc.info["name"] or "") and str(folder) in cmd:
            found.append(proc)
    return found


def _topic_replication(bootstrap: str, topic: str) -> tuple[set[int], str]:
    client = kafka_admin.admin(bootstrap)
    try:
        [desc] = client.describe_topics([topic])
        configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        client.close()
    min_isr = configs["topic"][topic]["min.insync.replicas"]["value"]
    return {len(p["replica_nodes"]) for p in desc["partitions"]}, min_isr


def test_three_brokers_lose_one_and_no_acknowledged_record(tmp_path: Path) -> None:
    env, settings = _env(tmp_path)
    data = tmp_path / "data"
    t0 = time.monotonic()
    try:
        up = run_cli(env, "up", "--brokers", "3", "--kafka-only", timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        up_s = time.monotonic() - t0
        assert stack_settings.effective(Settings(data_dir=data)).brokers == 3  # remembered

        rows = _status(env)
        assert all(rows[n]["running"] and rows[n]["healthy"] for n in NODES), rows
        assert not rows["rest"]["running"]  # --kafka-only
        brokers = [rows[n]["broker"] for n in NODES]
        assert [b["node_id"] for b in brokers] == [1, 2, 3]
        assert all(b["registered"] and not b["fenced"] for b in brokers), brokers
        assert sum(b["active_controller"] for b in brokers) == 1, brokers
        assert sum(b["under_replicated"] for b in brokers) == 0, brokers
        assert {rows[n]["port"] for n in NODES} == set(settings.kafka_ports)

        bootstrap = settings.bootstrap_servers
        assert _topic_replication(bootstrap, settings.topic) == ({3}, "2")
        assert _topic_replication(bootstrap, settings.sink_dead_letter_topic) == ({3}, "2")

        # The node leading partition 0 of the project's topic, so that a leader must move.
        client = kafka_admin.admin(bootstrap)
        try:
            [desc] = client.describe_topics([settings.topic])
        finally:
            client.close()
        leader = next(p["leader_id"] for p in desc["partitions"] if p["partition_index"] == 0)
        victim = NODES[leader - 1]
        pid = json.loads(stack.pid_file(settings, victim).read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        psutil.Process(pid).wait(timeout=10)

        topic = settings.topic
        sent = {f"e-{i}-{uuid.uuid4().hex[:8]}".encode() for i in range(RECORDS)}
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                 linger_ms=5, request_timeout_ms=15_000, delivery_timeout_ms=90_000)
        futures = [producer.send(topic, key=key, value=key) for key in sorted(sent)]
        producer.flush(timeout=90)
        producer.close()
        acked = {f.get(timeout=1).topic for f in futures}  # raises if any was not acknowledged
        assert acked == {topic}

        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 enable_auto_commit=False)
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                got.extend(m.value for m in batch)
        time.sleep(1)  # anything beyond what was sent (a duplicate) would arrive now
        for batch in consumer.poll(timeout_ms=1000).values():
            got.extend(m.value for m in batch)
        consumer.close()
        assert len(got) == len(sent) and set(got) == sent, (len(got), len(set(got) & sent))

        # The cluster notices: the victim's registration is fenced (or gone) and replicas are
        # missing. Waited for in-process (a CLI run per poll costs seconds), then seen by `status`.
        def noticed() -> bool:
            rows = {r.name: r.broker for r in stack.status(settings)}
            gone = rows[victim]
            return gone is not None and (gone.fenced or not gone.registered) and sum(
                b.under_replicated for b in rows.values() if b is not None) > 0

        deadline = time.monotonic() + 30
        while not noticed():
            assert time.monotonic() < deadline, stack.status(settings)
            time.sleep(0.5)
        rows = _status(env)
        gone = rows[victim]["broker"]
        assert gone["fenced"] or not gone["registered"], gone
        assert sum(rows[n]["broker"]["under_replicated"] for n in NODES) > 0, rows
        assert not rows[victim]["running"] and rows[victim]["crashed"]
        assert not rows[victim]["healthy"]
        alive = [n for n in NODES if n != victim]
        assert all(rows[n]["healthy"] for n in alive), rows
        assert sum(rows[n]["broker"]["active_controller"] for n in alive) == 1, rows

        down = run_cli(env, "down", timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        for name in alive:
            assert name in down.stdout
        assert not _our_jvms(data), [p.info for p in _our_jvms(data)]
    finally:
        for proc in _our_jvms(data):  # last resort: only JVMs running from this test's folder
            proc.kill()
    print(f"up --brokers 3 took {up_s:.0f}s, the whole test {time.monotonic() - t0:.0f}s")
