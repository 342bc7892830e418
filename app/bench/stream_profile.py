"""Where a stream worker's time goes: py-spy samples of the workers while they catch up, in parts.

``playground bench stream`` (unless ``--no-profile``) runs ``py-spy record`` on every worker
during the first catch-up of each engine x worker count: raw stacks of busy threads, 100
samples/s without pausing the worker (``--nonblocking``); where the operators are compiled,
native stacks (their frames are native ones then), 25 samples/s, pausing the worker for each.
Samples of a thread asleep (:func:`waiting`) are counted apart, not as time spent.
Each sample goes to the first part of :data:`PARTS` that one of its frames names, so the
order is a priority: the runner's
output step that calls the producer counts as outputs, a frame of the producer's own thread
as the producer; faust's and asyncio's frames, under every faust stack, count only when no
part of the stream's own code is in the sample. py-spy is a dev dependency (``make install``);
without it, or without the right to trace another process, the profile says why and the
benchmark goes on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow_playground.features.stream.state import BUILD as OPERATORS_BUILD

# Compiled operators (setup.py) run without Python frames: py-spy sees them only in the native
# stack, where Cython's line table names features/stream/state.py again. Native stacks need the
# worker paused for each sample (py-spy refuses --native with --nonblocking); that slowed a
# process by about a sixth at 100 samples/s here, so native sampling runs at a quarter the rate.
NATIVE = OPERATORS_BUILD == "compiled"
RATE_HZ = 25 if NATIVE else 100
# How the sampling was done, for the benchmark's text (after "... samples/s on every worker").
SAMPLING_NOTE = ("; native stacks, as the operators are compiled, so py-spy pauses the worker for each "
                 "sample and that run is a little slower than the others" if NATIVE else "")
REST = "the rest (start-up, threads' glue)"

# Native functions a thread sleeps in: waiting for I/O, for a lock, or for the GIL (CPython's
# take_gil and lock acquire sleep on a pthread condition or semaphore). py-spy tests whether a
# thread is idle just before it pauses the process, and with native stacks many waits get
# through: in one kafka-python worker's profile a third of the samples ended in one of these,
# in the client's network thread, the producer's sender and the checkpoint pool, re-taking the
# GIL after a send or a compression. They are no CPU time, so they are counted apart.
WAIT_FUNCTIONS = frozenset({
    "epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect", "nanosleep", "clock_nanosleep",
    "pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_clockwait", "sem_wait", "sem_timedwait",
    "sem_clockwait", "take_gil", "PyThread_acquire_lock_timed"})

# (part, fragments of a py-spy frame "function (path:line)"), highest priority first.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("operators (FeatureEngine)", ("features/stream/state.py",)),
    ("validation (decode_batch)", ("core/validation.py",)),
    ("merchant reorder, repartition rows", ("features/stream/event_time.py", "features/stream/wire.py")),
    ("checkpoints", ("features/stream/checkpoint.py", "StreamRunner._snapshot (", "StreamRunner._write (",
                     "StreamRunner.checkpoint (")),
    ("online store", ("features/online_store.py", "StreamRunner._write_store (")),
    ("outputs: pack and send", ("StreamRunner._send (", "Outputs.")),
    ("producer (batches, compression, requests)", ("kafka/producer/", "aiokafka/producer/")),
    ("client: fetch and record parsing", ("kafka/consumer/", "kafka/record/", "kafka/protocol/", "kafka/net/",
                                          "aiokafka/consumer/", "aiokafka/record/", "aiokafka/conn")),
    ("user and merchant tasks, runner", ("features/stream/tasks.py", "features/stream/runner.py",
                                         "features/stream/kafka_python_engine.py")),
    ("faust: stream and agent iteration", ("faust/streams", "faust/agents", "faust/channels",
                                           "faust/transport/conductor", "features/stream/faust_engine.py")),
    ("faust, mode, asyncio: event loop, tasks, futures", ("faust/", "mode/", "asyncio/", "aiokafka/")),
)


def classify(frames: Sequence[str]) -> str:
    """The part a sample's stack (frames, root first) belongs to."""
    for part, fragments in PARTS:
        if any(frag in f for f in frames for frag in fragments):
            return part
    return REST


def _python_frame(frame: str) -> bool:
    """A frame of Python code: ``name (path.py:line)`` (Cython's compiled ones are named so too)."""
    where = frame.rpartition(" (")[2]
    return ".py:" in where or where.startswith("<frozen")


def waiting(frames: Sequence[str]) -> bool:
    """Whether a sample (frames, root first) is a thread asleep: one of the native frames under its
    innermost Python frame is a :data:`WAIT_FUNCTIONS` function."""
    for frame in reversed(frames):
        if _python_frame(frame):
            return False
        if frame.partition(" (")[0] in WAIT_FUNCTIONS:
            return True
    return False


def split_waits(stacks: Iterable[tuple[Sequence[str], int]]
                ) -> tuple[list[tuple[Sequence[str], int]], int]:
    """``(busy stacks, samples of threads asleep)``."""
    busy, asleep = [], 0
    for frames, count in stacks:
        if waiting(frames):
            asleep += count
        else:
            busy.append((frames, count))
    return busy, asleep


def shares(stacks: Iterable[tuple[Sequence[str], int]]) -> tuple[int, dict[str, float]]:
    """``(samples, {part: share})`` from ``(frames, count)`` pairs; shares sum to 1, biggest first."""
    parts: Counter[str] = Counter()
    for frames, count in stacks:
        parts[classify(frames)] += count
    total = sum(parts.values())
    return total, {p: n / total for p, n in parts.most_common()} if total else {}


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw format: one ``frame;frame;...;frame count`` line per distinct stack."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the project's virtualenv), else on the PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def cannot_attach() -> str | None:
    """Why py-spy could not attach to a worker here, or None. The workers are the benchmark's
    children, not py-spy's, so Linux's Yama ``ptrace_scope`` 1 (a common default) stops a
    non-root py-spy from reading them."""
    if py_spy() is None:
        return "py-spy is not installed (it comes with the dev dependencies: make install)"
    scope_file = Path("/proc/sys/kernel/yama/ptrace_scope")
    scope = scope_file.read_text().strip() if scope_file.exists() else "0"
    if os.geteuid() != 0 and scope != "0":
        return (f"py-spy may not trace the workers: kernel.yama.ptrace_scope is {scope}; run as root, or "
                "allow it with: sudo sysctl kernel.yama.ptrace_scope=0 (or use --no-profile)")
    return None


@dataclass
class Profiler:
    """``py-spy record`` on each of ``pids`` until :meth:`stop`; then the samples' parts."""

    pids: list[int]
    out_dir: Path
    procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    error: str | None = None

    def start(self) -> None:
        self.error = cannot_attach()
        exe = py_spy()
        if self.error is not None or exe is None:  # cannot_attach says when there is no py-spy
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for pid in self.pids:
            path = self.out_dir / f"py-spy.{pid}.txt"
            cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw",
                   "--output", str(path), *(["--native"] if NATIVE else ["--nonblocking"])]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
            self.procs.append((proc, path))

    def stop(self) -> dict[str, Any]:
        """Stop sampling (SIGINT: py-spy writes what it has) and sum every worker's samples."""
        stacks: list[tuple[list[str], int]] = []
        errors: list[str] = []
        for proc, path in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate(timeout=10)
            if path.exists():
                stacks.extend(parse_raw(path.read_text(errors="replace")))
            else:
                lines = err.decode(errors="replace").strip().splitlines()
                errors.append(lines[-1] if lines else f"exit code {proc.returncode}")
        if self.error is None and not stacks:
            self.error = "py-spy wrote no samples: " + ("; ".join(errors) or "the workers were idle")
        if self.error is not None:
            return {"error": self.error}
        busy, asleep = split_waits(stacks)
        samples, parts = shares(busy)
        return {"tool": "py-spy", "rate_hz": RATE_HZ, "native": NATIVE, "workers": len(self.pids),
                "samples": samples, "waiting_samples": asleep, "parts": parts}
