"""Start and watch one features worker as a child process (parity runs, benchmarks, tests).

``engine`` picks the stream engine by its registered name (:mod:`.registry`); every engine
takes the same arguments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings, child_env
from dataflow_playground.features.online_store import OnlineStoreReader
from dataflow_playground.features.stream.registry import stream_engine


class StreamWorkerError(PlaygroundError):
    """The features worker died or did not finish in time."""


class WorkerProcess:
    def __init__(self, settings: Settings, input_topic: str, output_topic: str, dlq_topic: str,
                 store: Path, app_id: str, allowed_lateness_ms: int = 60_000,
                 record_freshness: bool = False, log: Path | None = None, engine: str = "faust") -> None:
        self.store, self.app_id, self.engine = store, app_id, engine
        self.log = log or store.with_suffix(".log")
        self.cmd = [sys.executable, "-m", stream_engine(engine).module, "--input-topic", input_topic,
                    "--output-topic", output_topic, "--dlq-topic", dlq_topic, "--store", str(store),
                    "--app-id", app_id, "--allowed-lateness-ms", str(allowed_lateness_ms)]
        if record_freshness:
            self.cmd.append("--record-freshness")
        self.env = child_env(settings)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self.store.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        # Ready = partitions assigned, so a measurement does not include the group join.
        self.wait_for(lambda st: st.get("assigned_partitions", 0) > 0, timeout_s, "start")

    def stats(self) -> dict[str, int]:
        if not self.store.exists():
            return {}
        reader = OnlineStoreReader(self.store)
        try:
            return reader.stats()
        finally:
            reader.close()

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise StreamWorkerError(f"the features worker exited with code {self.proc.returncode}; "
                                    f"log {self.log}:\n{tail}")

    def wait_for(self, done: Callable[[dict[str, int]], bool], timeout_s: float, what: str,
                 on_stats: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            st = self.stats()
            if on_stats and st:
                on_stats(st)
            if st and done(st):
                return st
            if time.monotonic() > deadline:
                raise StreamWorkerError(f"the features worker did not {what} within {timeout_s:.0f}s "
                                        f"(last counters {st}); see {self.log}")
            time.sleep(0.1)

    def wait_drained(self, records: int, timeout_s: float,
                     on_stats: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
        """Wait until all ``records`` were consumed and nothing is left in the reorder buffer."""
        return self.wait_for(lambda st: st.get("consumed", 0) >= records and st.get("buffered", 1) == 0
                             and st.get("processed", 0) + st.get("dead_lettered", 0)
                             + st.get("late_dropped", 0) >= records,
                             timeout_s, f"process {records} records", on_stats)

    def cpu_seconds(self) -> float:
        if self.proc is None:
            return 0.0
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return 0.0

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: only our worker
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
