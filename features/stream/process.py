"""Start and watch stream workers as child processes (parity runs, benchmarks, tests).

A :class:`WorkerGroup` is N workers of one application id: one consumer group, one online
store. ``engine`` picks the stream engine by its registered name (:mod:`.registry`); every
engine takes the same arguments. Workers can be killed (SIGKILL, as a crash), added and
stopped while the group runs, which is what the scale-out tests and benchmarks do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.processes import die_with_parent
from dataflow_playground.core.settings import Settings, child_env
from dataflow_playground.features.online_store import OnlineStoreReader
from dataflow_playground.features.stream.registry import stream_engine

T = TypeVar("T")


class StreamWorkerError(PlaygroundError):
    """A features worker died or did not finish in time."""


def drained(st: dict[str, int], records: int) -> bool:
    """Every one of ``records`` input records went through both stages (or was rejected/dropped)."""
    processed = st.get("processed", 0)
    return (st.get("consumed", 0) >= records and st.get("buffered", 1) == 0
            and processed + st.get("dead_lettered", 0) + st.get("late_dropped", 0) >= records
            and st.get("merchant_processed", 0) + st.get("merchant_late_dropped", 0) >= processed)


def read_stats(store: Path) -> dict[str, int]:
    """The store's combined counters (empty before any worker wrote)."""
    return _read(store, OnlineStoreReader.stats)


def _worker_rows(store: Path) -> dict[str, dict[str, int]]:
    return _read(store, OnlineStoreReader.worker_stats)


def _read(store: Path, what: Callable[[OnlineStoreReader], T]) -> T | dict[str, Any]:
    if not store.exists():
        return {}
    reader = OnlineStoreReader(store)
    try:
        return what(reader)
    finally:
        reader.close()


class WorkerProcess:
    """One worker process; ``worker_id`` makes it a static group member under that name."""

    def __init__(self, settings: Settings, input_topic: str, output_topic: str, dlq_topic: str,
                 store: Path, app_id: str, allowed_lateness_ms: int = 60_000,
                 record_freshness: bool = False, log: Path | None = None, engine: str = "faust",
                 worker_id: str = "", checkpoint_interval_s: float = 1.0) -> None:
        self.store, self.app_id, self.engine, self.worker_id = store, app_id, engine, worker_id
        self.log = log or store.with_suffix(f".{worker_id or 'worker'}.log")
        self.cmd = [sys.executable, "-m", stream_engine(engine).module, "--input-topic", input_topic,
                    "--output-topic", output_topic, "--dlq-topic", dlq_topic, "--store", str(store),
                    "--app-id", app_id, "--allowed-lateness-ms", str(allowed_lateness_ms),
                    "--checkpoint-interval-s", str(checkpoint_interval_s)]
        if worker_id:
            self.cmd += ["--worker-id", worker_id]
        if record_freshness:
            self.cmd.append("--record-freshness")
        self.env = child_env(settings)
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start the process and return at once (see :meth:`start` to wait for its partitions)."""
        self.store.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, start_new_session=True,
                                         preexec_fn=die_with_parent())

    def start(self, timeout_s: float = 60.0) -> None:
        self.launch()
        # Ready = partitions assigned, so a measurement does not include the group join.
        self.wait_for(lambda st: st.get("assigned_partitions", 0) > 0, timeout_s, "start")

    def stats(self) -> dict[str, int]:
        return read_stats(self.store)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise StreamWorkerError(f"the features worker exited with code {self.proc.returncode}; "
                                    f"log {self.log}:\n{tail}")

    def wait_for(self, done: Callable[[dict[str, int]], bool], timeout_s: float, what: str,
                 on_stats: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
        return _wait(self.store, [self], done, timeout_s, what, on_stats)

    def wait_drained(self, records: int, timeout_s: float,
                     on_stats: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
        """Wait until all ``records`` went through both stages and nothing is left buffered."""
        return self.wait_for(lambda st: drained(st, records), timeout_s, f"process {records} records",
                             on_stats)

    def cpu_seconds(self) -> float:
        if self.proc is None:
            return 0.0
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return 0.0

    def kill(self) -> None:
        """SIGKILL: a crash, no final checkpoint, no goodbye to the group."""
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: only our worker
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _wait(store: Path, workers: list[WorkerProcess], done: Callable[[dict[str, int]], bool],
          timeout_s: float, what: str, on_stats: Callable[[dict[str, int]], None] | None) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        for w in workers:
            w.check_alive()
        st = read_stats(store)
        if on_stats and st:
            on_stats(st)
        if st and done(st):
            return st
        if time.monotonic() > deadline:
            logs = ", ".join(str(w.log) for w in workers)
            raise StreamWorkerError(f"the features workers did not {what} within {timeout_s:.0f}s "
                                    f"(last counters {st}); see {logs}")
        time.sleep(0.1)


class WorkerGroup:
    """N workers of one application id sharing its partitions, checkpoints and online store."""

    def __init__(self, settings: Settings, input_topic: str, output_topic: str, dlq_topic: str,
                 store: Path, app_id: str, engine: str = "faust", allowed_lateness_ms: int = 60_000,
                 record_freshness: bool = False, checkpoint_interval_s: float = 1.0) -> None:
        self.settings, self.store, self.app_id, self.engine = settings, store, app_id, engine
        self._args = (input_topic, output_topic, dlq_topic)
        self._kw = {"allowed_lateness_ms": allowed_lateness_ms, "record_freshness": record_freshness,
                    "checkpoint_interval_s": checkpoint_interval_s}
        self.workers: list[WorkerProcess] = []

    def new_worker(self, index: int | None = None) -> WorkerProcess:
        i = len(self.workers) if index is None else index
        return WorkerProcess(self.settings, *self._args, store=self.store, app_id=self.app_id,
                             engine=self.engine, worker_id=f"{self.app_id}-w{i}",
                             allowed_lateness_ms=int(self._kw["allowed_lateness_ms"]),
                             record_freshness=bool(self._kw["record_freshness"]),
                             checkpoint_interval_s=float(self._kw["checkpoint_interval_s"]))

    def start(self, n: int, timeout_s: float = 90.0) -> None:
        """Start ``n`` workers; return once every partition of both stages has an owner."""
        for _ in range(n):
            w = self.new_worker()
            w.launch()
            self.workers.append(w)
        self.wait_assigned(timeout_s, workers=n)

    def add(self, timeout_s: float = 90.0) -> WorkerProcess:
        w = self.new_worker()
        w.launch()
        self.workers.append(w)
        self.wait_assigned(timeout_s, workers=len(self.alive()))
        return w

    def restart(self, index: int, timeout_s: float = 90.0) -> WorkerProcess:
        """Start worker ``index`` again under the same static id (after a kill)."""
        w = self.new_worker(index)
        w.launch()
        self.workers[index] = w
        self.wait_assigned(timeout_s, workers=len(self.alive()))
        return w

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive]

    def stats(self) -> dict[str, int]:
        return read_stats(self.store)

    def wait_assigned(self, timeout_s: float, workers: int) -> dict[str, int]:
        """Until the live worker processes (``workers`` of them) own every task between them,
        each at least one while there are no more workers than partitions (a group still
        rebalancing can show one worker owning everything and a newcomer nothing).

        Read from each worker's own row (its PID included), so a killed worker's last
        figures, still fresh for a few seconds, are not taken for a live one's.
        """
        tasks = 2 * self.settings.partitions
        deadline = time.monotonic() + timeout_s
        while True:
            alive = self.alive()
            for w in alive:
                w.check_alive()
            rows = _worker_rows(self.store)
            owned = [rows.get(w.worker_id, {}) for w in alive]
            current = [r for w, r in zip(alive, owned, strict=True)
                       if w.proc is not None and r.get("pid") == w.proc.pid]
            owns = [r.get("assigned_partitions", 0) for r in current]
            if (len(current) >= workers and sum(owns) == tasks
                    and (workers > self.settings.partitions or all(owns))):
                return self.stats()
            if time.monotonic() > deadline:
                raise StreamWorkerError(f"{len(alive)} features workers did not share {tasks} tasks "
                                        f"within {timeout_s:.0f}s (their rows: {owned}); see "
                                        f"{', '.join(str(w.log) for w in alive)}")
            time.sleep(0.1)

    def wait_for(self, done: Callable[[dict[str, int]], bool], timeout_s: float, what: str,
                 on_stats: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
        return _wait(self.store, self.alive(), done, timeout_s, what, on_stats)

    def wait_drained(self, records: int, timeout_s: float,
                     on_stats: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
        return self.wait_for(lambda st: drained(st, records), timeout_s, f"process {records} records",
                             on_stats)

    def cpu_seconds(self) -> float:
        return sum(w.cpu_seconds() for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
