"""`bench kafka` stopped by SIGTERM or SIGINT stops the broker it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import free_ports, sigint_as_from_a_terminal


@pytest.mark.kafka
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_bench_stops_the_broker_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    kafka, controller, rest, rpc, dashboard = free_ports(5)
    env = {**os.environ, "PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
           "PLAYGROUND_RESULTS_DIR": str(tmp_path / "results"), "PLAYGROUND_KAFKA_PORT": str(kafka),
           "PLAYGROUND_KAFKA_CONTROLLER_PORT": str(controller), "PLAYGROUND_REST_PORT": str(rest),
           "PLAYGROUND_RPC_PORT": str(rpc), "PLAYGROUND_DASHBOARD_PORT": str(dashboard),
           "PLAYGROUND_KAFKA_HEAP": "256m"}
    bench = subprocess.Popen([sys.executable, "-m", "dataflow_playground.app.cli", "bench", "kafka",
                              "--events", "2000000", "--repeats", "1", "--tuned-only"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=sigint_as_from_a_terminal)
    pid_file = tmp_path / "data" / "run" / "kafka.pid"
    broker = None
    try:
        deadline = time.monotonic() + 120
        assert bench.stdout is not None
        for line in bench.stdout:  # the broker is up once the bench says it started
            if "kafka: started" in line or time.monotonic() > deadline:
                break
        assert pid_file.exists(), "the bench did not start a broker"
        broker = json.loads(pid_file.read_text())["pid"]
        bench.send_signal(sig)
        # communicate, not wait: it keeps reading the bench's output (a full pipe would block its
        # shutdown messages). The bound covers the broker's own stop: SIGTERM, then SIGKILL after
        # shutdown_timeout_s (30 s), which a loaded machine can take in full.
        try:
            out, _ = bench.communicate(timeout=120)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"the bench did not stop within 120 s of {sig.name}; its output since the "
                        f"broker started:\n{exc.output}")
        assert bench.returncode != 0, out
        assert not psutil.pid_exists(broker) or psutil.Process(broker).status() == psutil.STATUS_ZOMBIE
        assert not pid_file.exists()
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        if broker is not None and psutil.pid_exists(broker):  # only the broker this test's bench started
            psutil.Process(broker).kill()
