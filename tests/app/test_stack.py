"""Stack bookkeeping without a broker: stale PID files, taken ports, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from dataflow_playground.app import stack
from dataflow_playground.core.errors import PortInUseError
from dataflow_playground.core.schema import Event
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, generate_events
from dataflow_playground.storage.duckdb_store import EventStore
from tests.helpers import free_ports


def _settings(tmp_path: Path) -> Settings:
    k, c, r, g, d = free_ports(5)
    return Settings(data_dir=tmp_path, kafka_port=k, kafka_controller_port=c, rest_port=r, rpc_port=g,
                    dashboard_port=d)


def test_stale_pid_file_of_a_dead_process_is_cleared(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    s.run_dir.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stack.pid_file(s, "kafka").write_text(json.dumps(
        {"pid": proc.pid, "port": s.kafka_port, "create_time": 1.0, "started_at": 1.0}))
    assert stack.read_pid(s, "kafka") is None
    assert not stack.pid_file(s, "kafka").exists()


def test_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    """A PID now owned by another process (different start time) is stale, never signalled."""
    s = _settings(tmp_path)
    s.run_dir.mkdir(parents=True)
    me = psutil.Process(os.getpid())
    stack.pid_file(s, "rest").write_text(json.dumps(
        {"pid": me.pid, "port": s.rest_port, "create_time": me.create_time() - 1000, "started_at": 0}))
    assert stack.read_pid(s, "rest") is None
    assert stack.down(s) == []  # and we are still alive


def test_corrupt_pid_file_is_cleared(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    s.run_dir.mkdir(parents=True)
    stack.pid_file(s, "kafka").write_text("{not json")
    assert stack.read_pid(s, "kafka") is None


def test_taken_port_names_port_and_setting(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.rest_port))
        blocker.listen()
        with pytest.raises(PortInUseError) as info:
            stack.start(stack.REST, s)
    msg = str(info.value)
    assert str(s.rest_port) in msg and "PLAYGROUND_REST_PORT" in msg
    assert not stack.pid_file(s, "rest").exists()


def test_port_taken_cli_error_is_clear(tmp_path: Path) -> None:
    k, c, r, g, d = free_ports(5)
    env = {**os.environ, "PLAYGROUND_DATA_DIR": str(tmp_path), "PLAYGROUND_KAFKA_PORT": str(k),
           "PLAYGROUND_KAFKA_CONTROLLER_PORT": str(c), "PLAYGROUND_REST_PORT": str(r),
           "PLAYGROUND_RPC_PORT": str(g), "PLAYGROUND_DASHBOARD_PORT": str(d)}
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", k))
        blocker.listen()
        out = subprocess.run([sys.executable, "-m", "dataflow_playground.app.cli", "up"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"port {k}" in out.stdout and "PLAYGROUND_KAFKA_PORT" in out.stdout
    assert not list(Path(tmp_path, "run").glob("*.pid"))


def test_status_reports_the_store_or_why_it_cannot(tmp_path: Path) -> None:
    """`status` reads the DuckDB store read-only: its duplicates; a missing or busy file is a note."""
    s = _settings(tmp_path)
    missing = stack.store_status(s)
    assert missing.figures is None and missing.note and "not created yet" in missing.note

    events = [Event(**e) for e in generate_events(GeneratorConfig(events=5, seed=3))]  # type: ignore[arg-type]
    again = events[2].model_copy(update={"amount": 9.5})
    batch = [*events, again]
    recs = [SimpleNamespace(topic="t", partition=0, offset=i, key=b"k", value=e.model_dump_json().encode())
            for i, e in enumerate(batch)]
    with EventStore(s.store_path) as store:
        store.write_records(batch, recs, [], {("t", 0): (0, len(batch))})
    env = {**os.environ, "PLAYGROUND_DATA_DIR": str(tmp_path), "PLAYGROUND_KAFKA_PORT": str(s.kafka_port),
           "PLAYGROUND_KAFKA_CONTROLLER_PORT": str(s.kafka_controller_port),
           "PLAYGROUND_REST_PORT": str(s.rest_port), "PLAYGROUND_RPC_PORT": str(s.rpc_port),
           "PLAYGROUND_DASHBOARD_PORT": str(s.dashboard_port)}
    out = subprocess.run([sys.executable, "-m", "dataflow_playground.app.cli", "status"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1  # nothing runs; the store line does not change the verdict
    assert "5 events, 0 dead letters, 1 duplicates" in out.stdout, out.stdout

    hold = (f"import duckdb,time; c=duckdb.connect({str(s.store_path)!r}); print('ok', flush=True); "
            "time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        busy = stack.store_status(s)
        assert busy.figures is None and busy.note
        assert "open for writing by another process" in busy.note and f"PID {holder.pid}" in busy.note
    finally:
        holder.kill()
        holder.wait()
