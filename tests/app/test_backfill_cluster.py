"""The backfill against a real standalone Spark cluster: one master and two workers on
127.0.0.1, started from the pyspark installation, stopped by PID afterwards (no JVM left).

The same events go through DuckDB; the cluster's file must hold the same values.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from tests.app.test_backfill import assert_same_values, check_training_file
from tests.helpers import free_ports, run_cli

pytestmark = [pytest.mark.spark, pytest.mark.slow]

WORKERS = 2


@dataclass
class StandaloneCluster:
    url: str
    ui: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def state(self) -> dict[str, object]:
        state: dict[str, object] = httpx.get(f"{self.ui}/json/", timeout=5).json()
        return state


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # spark-class ends in `exec java ...`: the PID is the JVM's own.
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):  # workers first, the master last
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    home = _spark_home()
    work = tmp_path_factory.mktemp("spark-cluster")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_LOG_DIR": str(work), "SPARK_WORKER_DIR": str(work / "work")}
    port, ui, *worker_uis = free_ports(2 + WORKERS)
    spark_class = str(home / "bin" / "spark-class")
    c = StandaloneCluster(url=f"spark://127.0.0.1:{port}", ui=f"http://127.0.0.1:{ui}")
    try:
        c.procs.append(_start([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], work / "master.log", env))
        for i, wui in enumerate(worker_uis):
            c.procs.append(_start([spark_class, "org.apache.spark.deploy.worker.Worker", c.url,
                                   "--host", "127.0.0.1", "--cores", "1", "--memory", "512m",
                                   "--webui-port", str(wui), "--work-dir", str(work / f"worker{i}")],
                                  work / f"worker{i}.log", env))
        # Ready means the master reports both workers alive, not that a port opened.
        deadline = time.monotonic() + 90
        while True:
            dead = [p.args for p in c.procs if p.poll() is not None]
            assert not dead, f"exited: {dead}; logs in {work}"
            try:
                if c.state().get("aliveworkers") == WORKERS:
                    break
            except (httpx.HTTPError, ValueError):  # not listening yet, or a page still starting
                pass
            assert time.monotonic() < deadline, f"cluster not ready in 90 s; logs in {work}"
            time.sleep(0.5)
        yield c
    finally:
        pids = [p.pid for p in c.procs]
        _stop(c.procs)
        alive = [pid for pid in pids if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"Spark master/workers still running: {alive}"
        leftover = [p.pid for p in psutil.process_iter(["cmdline"])
                    if any(str(work) in arg or c.url in arg for arg in (p.info["cmdline"] or []))]
        assert not leftover, f"JVMs of the test cluster left behind (executors?): {leftover}"


def test_backfill_on_a_standalone_cluster_equals_duckdb(cluster: StandaloneCluster, tmp_path: Path) -> None:
    events = generate_table(GeneratorConfig(events=3_000, seed=11, rate=2.0, out_of_order=0.1,
                                            max_lateness_ms=30_000))
    pq.write_table(events, tmp_path / "events.parquet")
    tables = {}
    for engine, extra in (("duckdb", []), ("spark", ["--master", cluster.url])):
        out = tmp_path / f"{engine}.parquet"
        r = run_cli(dict(os.environ), "features", "backfill", "--engine", engine, *extra,
                    "--input", str(tmp_path / "events.parquet"), "--out", str(out),
                    timeout=420)  # a standalone cluster's start-up is slow on a loaded machine
        assert r.returncode == 0, r.stdout + r.stderr
        tables[engine] = check_training_file(out, events)
    assert f"spark on {cluster.url}" in r.stdout
    assert_same_values(tables["duckdb"], tables["spark"])
    # The work ran on the cluster: one finished application, with executors on its workers.
    state = cluster.state()
    apps = state["completedapps"]
    assert isinstance(apps, list) and len(apps) == 1, state
    assert apps[0]["cores"] >= 1, apps[0]
