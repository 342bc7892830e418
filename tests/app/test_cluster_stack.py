"""Cluster mode (``brokers=3``) without a broker: settings, node configs, topics, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataflow_playground.app import stack, stack_settings
from dataflow_playground.core import kafka_admin, kafka_native
from dataflow_playground.core.errors import PortInUseError, StackError
from dataflow_playground.core.settings import Settings
from tests.helpers import free_ports


def _cluster(tmp_path: Path) -> Settings:
    k1, c1, k2, c2, k3, c3, rest, rpc, dash = free_ports(9)
    return Settings(data_dir=tmp_path, brokers=3, kafka_port=k1, kafka_controller_port=c1, kafka_2_port=k2,
                    kafka_2_controller_port=c2, kafka_3_port=k3, kafka_3_controller_port=c3,
                    rest_port=rest, rpc_port=rpc, dashboard_port=dash)


def _props(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_brokers_setting_from_the_environment_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYGROUND_BROKERS", "3")
    s = Settings()
    assert s.brokers == 3
    ports = (s.kafka_port, s.kafka_2_port, s.kafka_3_port)
    assert s.bootstrap_servers == ",".join(f"{s.host}:{p}" for p in ports)
    monkeypatch.setenv("PLAYGROUND_BROKERS", "2")
    with pytest.raises(ValidationError, match="brokers"):
        Settings()
    with pytest.raises(ValidationError, match="PLAYGROUND_KAFKA_2_PORT"):
        Settings(brokers=3, kafka_2_port=8000)  # the REST port
    # One broker: the other nodes' ports are not used, so they cannot clash.
    assert Settings(brokers=1, kafka_2_port=8000).bootstrap_servers.count(",") == 0


def test_node_configs_form_one_static_quorum_with_replicated_defaults(tmp_path: Path) -> None:
    s = _cluster(tmp_path)
    nodes = kafka_native.nodes(s)
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    assert len({n.home for n in nodes}) == 3
    ports = [p for n in nodes for p in (n.port, n.controller_port)]
    assert len(set(ports)) == 6
    props = [_props(kafka_native.write_config(s, n)) for n in nodes]
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    voters = {p["controller.quorum.voters"] for p in props}
    assert voters == {",".join(f"{n.node_id}@{s.host}:{n.controller_port}" for n in nodes)}
    for p, n in zip(props, nodes, strict=True):
        assert p["listeners"] == f"PLAINTEXT://{s.host}:{n.port},CONTROLLER://{s.host}:{n.controller_port}"
        assert p["log.dirs"] == str((n.home / "data").resolve())
        assert "controller.quorum.bootstrap.servers" not in p
        for key, value in kafka_native.CLUSTER_PROPS.items():
            assert p[key] == value, key
    assert props[0]["min.insync.replicas"] == "2" and props[0]["default.replication.factor"] == "3"

    single = _props(kafka_native.write_config(s.model_copy(update={"brokers": 1})))
    assert single["offsets.topic.replication.factor"] == "1" and "controller.quorum.voters" not in single
    assert single["log.dirs"] == str((tmp_path / "run" / "kafka" / "data").resolve())


def test_the_cluster_id_is_made_once_and_kept(tmp_path: Path) -> None:
    s = _cluster(tmp_path)
    first = kafka_native.cluster_id(s)
    assert kafka_native.cluster_id(s) == first and len(first) == 22


def test_project_topics_are_replicated_three_times_in_cluster_mode(tmp_path: Path) -> None:
    s = _cluster(tmp_path)
    for spec in kafka_admin.default_topics(s):
        assert spec.replication == 3 and spec.topic_configs()["min.insync.replicas"] == "2"
    for spec in kafka_admin.default_topics(s.model_copy(update={"brokers": 1})):
        assert spec.replication == 1 and "min.insync.replicas" not in spec.topic_configs()


def test_a_taken_port_of_any_node_stops_the_cluster_before_it_starts(tmp_path: Path) -> None:
    s = _cluster(tmp_path)
    with socket.socket() as blocker:
        blocker.bind((s.host, s.kafka_3_controller_port))
        blocker.listen()
        with pytest.raises(PortInUseError) as info:
            stack.start_together(stack.kafka_components(s), s)
    assert "PLAYGROUND_KAFKA_3_CONTROLLER_PORT" in str(info.value) and "kafka-3" in str(info.value)
    assert not list(s.run_dir.glob("*.pid"))  # nothing was started


def test_switching_broker_count_while_kafka_runs_is_refused(tmp_path: Path) -> None:
    single = _cluster(tmp_path).model_copy(update={"brokers": 1})
    stack_settings.remember(single)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import psutil

        stack.pid_file(single, "kafka").write_text(json.dumps(
            {"pid": holder.pid, "port": single.kafka_port,
             "create_time": psutil.Process(holder.pid).create_time(), "started_at": 0}))
        with pytest.raises(StackError, match="--brokers 3"):
            stack.check_brokers(single.model_copy(update={"brokers": 3}))
        stack.check_brokers(single)  # the same count: fine
    finally:
        holder.kill()
        holder.wait()
    assert json.loads(stack_settings.state_file(single).read_text())["brokers"] == 1


def test_up_with_an_unsupported_broker_count_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PLAYGROUND_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "dataflow_playground.app.cli", "up", "--brokers", "2"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "--brokers" in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.glob("run/*.pid"))
