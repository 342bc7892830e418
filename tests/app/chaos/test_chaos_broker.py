"""`playground chaos --quick`, one scenario per test, judged from its JSON.

Each scenario starts its own broker(s) and services in a temporary folder on free ports and
stops them; the test checks the pass condition from the figures (not only the ``passed``
flag), that the counters balance, and that nothing the run started outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _pids() -> set[int]:
    return {p.pid for p in psutil.process_iter()}


def _chaos(tmp_path: Path, scenario: str, timeout: float = 280) -> dict[str, Any]:
    # TMPDIR: the scenario's own folder (tempfile.mkdtemp) is made under tmp_path, so its
    # processes are told apart from those of any other run of the same scenario.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PLAYGROUND_RESULTS_DIR": str(tmp_path / "results"),
           "PLAYGROUND_DATA_DIR": str(tmp_path / "data"), "PLAYGROUND_KAFKA_HEAP": "384m",
           "TMPDIR": str(scratch)}
    before = _pids()
    prefix = scratch / f"playground-chaos-{scenario}-"
    proc = _run_chaos(env, scenario, timeout, before, prefix)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    [outcome] = doc["scenarios"]
    assert outcome["scenario"] == scenario
    assert outcome["balance_errors"] == [], outcome
    assert doc["takeaway"].startswith(("1 of 1 scenarios passed", "0 of 1 scenarios passed"))
    for ext in ("json", "md", "png"):
        assert Path(doc["results"][ext]).exists()
    # What the run started (JVMs, services, sinks, workers) is gone with it.
    leftover = [p.info for p in psutil.process_iter(["pid", "cmdline"])
                if p.pid not in before and _chaos_process(p, prefix)]
    assert not leftover, leftover
    return outcome  # type: ignore[no-any-return]


def _run_chaos(env: dict[str, str], scenario: str, timeout: float, before: set[int], prefix: Path
               ) -> subprocess.CompletedProcess[str]:
    """The chaos CLI; past ``timeout`` it gets SIGTERM, so it stops what it started (a SIGKILL
    would leave its brokers and services running), then the test fails with its output."""
    args = [sys.executable, "-m", "dataflow_playground.app.cli", "chaos", "--quick", "--json",
            "--scenario", scenario]
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            for p in psutil.process_iter():  # whatever its clean-up did not stop
                if p.pid not in before and _chaos_process(p, prefix):
                    with contextlib.suppress(psutil.Error):
                        p.kill()
            pytest.fail(f"chaos --scenario {scenario} did not finish within {timeout:.0f}s:\n"
                        f"{err[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _chaos_process(proc: psutil.Process, folder_prefix: Path) -> bool:
    """Started by this run: its command line or data folder is in the run's scenario folder
    (processes of another run, even of the same scenario, are not this run's)."""
    try:
        where = " ".join(proc.cmdline()) + " " + proc.environ().get("PLAYGROUND_DATA_DIR", "")
    except psutil.Error:
        return False
    return str(folder_prefix) in where


def test_sink_sigkilled_loses_and_doubles_nothing(tmp_path: Path) -> None:
    o = _chaos(tmp_path, "sink-kill")
    assert len(o["recovery_s"]) == 3
    assert o["acknowledged"] == o["sent"] > 0
    assert (o["lost"], o["duplicated"]) == (0, 0)
    assert o["stored"] + o["dead_lettered"] == o["received"] == o["sent"]
    assert o["passed"], o


def test_single_broker_restart_loses_no_acknowledged_event(tmp_path: Path) -> None:
    o = _chaos(tmp_path, "broker-restart")
    assert (o["lost"], o["duplicated"]) == (0, 0)
    assert o["stored"] == o["acknowledged"] > 0
    assert o["extra"]["producer_stall_s"] >= o["extra"]["down_s"]
    assert o["passed"], o


def test_cluster_broker_failover_loses_no_acknowledged_event(tmp_path: Path) -> None:
    o = _chaos(tmp_path, "cluster-failover")
    assert o["lost"] == 0
    assert o["extra"]["failover_s"] >= 0
    assert "produce_errors" in o["extra"] and "retries" in o["extra"]
    assert o["passed"], o


def test_stream_worker_sigkilled_ends_equal_to_batch(tmp_path: Path) -> None:
    o = _chaos(tmp_path, "worker-kill")
    assert len(o["recovery_s"]) == 2
    assert set(o["extra"]["mismatches_by_feature"].values()) == {0}
    assert o["passed"], o


def test_rest_service_killed_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    o = _chaos(tmp_path, "rest-kill")
    assert (o["lost"], o["duplicated"]) == (0, 0)
    assert o["unacknowledged"] > 0  # the kill did land under load
    assert o["acknowledged"] + o["unacknowledged"] == o["sent"]
    assert len(o["recovery_s"]) == 1
    assert o["passed"], o


def test_poison_records_stop_no_consumer_and_are_dead_lettered(tmp_path: Path) -> None:
    o = _chaos(tmp_path, "poison")
    assert o["extra"]["alive"] == {"sink": True, "features-worker": True}
    assert set(o["extra"]["codecs"]) == {"none", "gzip", "snappy", "lz4", "zstd"}
    for consumer, figures in o["extra"]["dead_letters"].items():
        assert figures["missing"] == [], consumer
        assert (figures["twice"], figures["wrong_stage"], figures["without_reason"]) == (0, 0, 0)
        assert figures["dead_letters"] >= o["extra"]["bad_records"]
    assert o["passed"], o
