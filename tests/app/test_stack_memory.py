"""What the stack remembers and reports without a broker: the ports `up` used, crashed
components, the stream worker's health without Kafka, and the log rotation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow_playground.app import stack, stack_settings
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.online_store import OnlineStoreWriter, worker_healthy
from tests.helpers import free_ports, run_cli


def _env(data: Path) -> dict[str, str]:
    """An environment that sets the data folder and nothing else of the playground's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYGROUND_")}
    env["PLAYGROUND_DATA_DIR"] = str(data)
    return env


def test_effective_settings_take_the_remembered_ports_unless_overridden(tmp_path: Path) -> None:
    kafka, controller, rest, rpc = free_ports(4)
    started = Settings(data_dir=tmp_path, kafka_port=kafka, kafka_controller_port=controller,
                       rest_port=rest, rpc_port=rpc)
    stack_settings.remember(started)

    bare = stack_settings.effective(Settings(data_dir=tmp_path))
    assert (bare.kafka_port, bare.kafka_controller_port, bare.rest_port, bare.rpc_port) == (
        kafka, controller, rest, rpc)
    assert bare.bootstrap_servers == f"127.0.0.1:{kafka}"

    other = free_ports(1)[0]
    overridden = stack_settings.effective(Settings(data_dir=tmp_path, rest_port=other))
    assert overridden.rest_port == other and overridden.rpc_port == rpc

    stack_settings.forget(started)
    assert stack_settings.effective(Settings(data_dir=tmp_path)).rest_port == Settings().rest_port


def test_a_broken_remembered_file_is_ignored(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    stack_settings.state_file(s).parent.mkdir(parents=True)
    stack_settings.state_file(s).write_text("{not json")
    assert stack_settings.effective(s) == s


def test_status_without_the_env_reports_the_ports_up_used(tmp_path: Path) -> None:
    kafka, controller, rest, rpc = free_ports(4)
    stack_settings.remember(Settings(data_dir=tmp_path, kafka_port=kafka, kafka_controller_port=controller,
                                     rest_port=rest, rpc_port=rpc))
    out = run_cli(_env(tmp_path), "status", timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr  # nothing runs: not healthy
    for port in (kafka, rest, rpc):
        assert str(port) in out.stdout, out.stdout


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_component_whose_process_died_is_crashed_with_its_log(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    s.run_dir.mkdir(parents=True)
    stack.pid_file(s, "rest").write_text(json.dumps(
        {"pid": _dead_pid(), "port": s.rest_port, "create_time": 1.0, "started_at": 1.0}))
    log = stack.log_file(s, "rest")
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(30)) + "Traceback: the last words\n")

    rows = {r.name: r for r in stack.status(s)}
    assert rows["rest"].crashed and not rows["rest"].running and not rows["rest"].healthy
    assert not rows["rpc"].crashed  # never started: stopped, not crashed

    out = run_cli(_env(tmp_path), "status", timeout=60)
    assert out.returncode == 1
    assert "rest crashed" in out.stdout and str(log) in out.stdout, out.stdout
    assert "Traceback: the last words" in out.stdout
    assert "line 5\n" not in out.stdout  # only the last lines

    down = run_cli(_env(tmp_path), "down", timeout=60)
    assert down.returncode == 0 and "had crashed" in down.stdout
    assert not any(r.crashed for r in stack.status(s))


def test_stream_worker_is_unhealthy_without_a_broker(tmp_path: Path) -> None:
    kafka, controller = free_ports(2)
    s = Settings(data_dir=tmp_path, kafka_port=kafka, kafka_controller_port=controller)
    from dataflow_playground.features.online_store import online_store_path

    writer = OnlineStoreWriter(online_store_path(s))
    writer.write([], worker_id="features-w0")  # a fresh heartbeat
    writer.con.close()
    assert worker_healthy(s, "features-w0")  # the heartbeat alone would say healthy
    assert not stack.FEATURES_WORKER.healthy(s)


def test_a_large_log_is_rotated_when_its_component_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    s = Settings(data_dir=tmp_path)
    log = stack.log_file(s, "echo")
    log.parent.mkdir(parents=True)
    log.write_bytes(b"x" * 2048)
    monkeypatch.setattr(stack, "LOG_ROTATE_BYTES", 1024)
    comp = stack.Component(name="echo", ports=lambda _s: {},
                           command=lambda _s: [sys.executable, "-c", "print('fresh')"],
                           healthy=lambda _s: True, main_port=lambda _s: 0)
    stack.start(comp, s)
    stack.stop(comp, s)
    assert log.with_name("echo.log.1").stat().st_size == 2048
    assert log.stat().st_size < 1024


def test_the_broker_bounds_each_partition_by_size(tmp_path: Path) -> None:
    from dataflow_playground.core import kafka_native

    s = Settings(data_dir=tmp_path, retention_bytes=32 * 2**20)
    props = dict(line.split("=", 1) for line in kafka_native.write_config(s).read_text().splitlines())
    assert int(props["log.retention.bytes"]) == 32 * 2**20
    assert int(props["log.segment.bytes"]) == 8 * 2**20  # a partition holds at most 40 MiB
    with pytest.raises(ValueError, match="retention_bytes"):
        Settings(retention_bytes=0)


def test_down_purge_deletes_the_data_folder_only_when_nothing_runs(tmp_path: Path) -> None:
    from dataflow_playground.app.stack_report import purge_data
    from dataflow_playground.core.errors import StackError

    data = tmp_path / "data"
    s = Settings(data_dir=data)
    s.run_dir.mkdir(parents=True)
    (data / "playground.duckdb").write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import psutil

        stack.pid_file(s, "rest").write_text(json.dumps(
            {"pid": holder.pid, "port": s.rest_port, "create_time": psutil.Process(holder.pid).create_time(),
             "started_at": 1.0}))
        with pytest.raises(StackError, match="still running: rest"):
            purge_data(s)
        assert (data / "playground.duckdb").exists()
    finally:
        holder.kill()
        holder.wait()
    out = run_cli(_env(data), "down", "--purge", timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not data.exists()
