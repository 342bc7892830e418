"""A scenario's own stack: a temporary data folder, free ports, and what it started.

:class:`ChaosEnv` starts components through :mod:`...app.stack` (so PID files, logs and
health checks are the stack's own), SIGKILLs them as a crash would, and on leaving stops
everything it started, in reverse order, and removes its folder. The runner turns SIGTERM
into ``KeyboardInterrupt``, so Ctrl-C and a ``kill`` both leave through the same exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil

from dataflow_playground.app import stack
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.processes import die_with_parent
from dataflow_playground.core.settings import Settings, child_env


class ChaosError(PlaygroundError):
    """A chaos scenario could not set up or inject its fault."""


class ChaosEnv:
    """Settings on free ports in a fresh folder; stops and removes what it started on exit."""

    def __init__(self, base: Settings, name: str, keep: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=f"playground-chaos-{name}-"))
        kafka, controller, rest, rpc = stack.free_ports(4, base.host)
        self.settings = base.model_copy(update={
            "data_dir": self.folder / "data", "results_dir": self.folder / "results",
            "duckdb_path": None, "bootstrap_servers_override": None,
            "kafka_port": kafka, "kafka_controller_port": controller,
            "rest_port": rest, "rpc_port": rpc,
        })
        self.keep = keep
        self._components: list[stack.Component] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> ChaosEnv:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- stack components ----------------------------------------------------------------

    def start(self, comp: stack.Component) -> float:
        """Start ``comp`` (or find it running) and wait until healthy; the seconds it took."""
        t0 = time.monotonic()
        stack.start(comp, self.settings)
        if comp not in self._components:
            self._components.append(comp)
        return time.monotonic() - t0

    def start_together(self, comps: list[stack.Component]) -> float:
        """Start ``comps`` at once and wait until all are healthy (a Kafka cluster's nodes)."""
        t0 = time.monotonic()
        stack.start_together(comps, self.settings)
        self._components.extend(c for c in comps if c not in self._components)
        return time.monotonic() - t0

    def start_kafka(self, topics: list[kafka_admin.TopicSpec] | None = None) -> float:
        took = self.start(stack.KAFKA)
        kafka_admin.ensure_topics(self.settings.bootstrap_servers,
                                  topics or kafka_admin.default_topics(self.settings))
        return took

    def kill(self, comp: stack.Component) -> int:
        """SIGKILL ``comp``'s process group (a crash: no shutdown hook runs); its PID."""
        rec = stack.read_pid(self.settings, comp.name)
        if rec is None:
            raise ChaosError(f"{comp.name} is not running, so it cannot be killed")
        kill_group(rec.pid)
        stack.pid_file(self.settings, comp.name).unlink(missing_ok=True)
        return rec.pid

    # --- processes of the scenario's own ---------------------------------------------------

    def spawn(self, cmd: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Run ``cmd`` with these settings in its own session, output to a log in the run dir."""
        log = stack.log_file(self.settings, log_name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=child_env(self.settings), start_new_session=True,
                                    preexec_fn=die_with_parent())
        self._procs.append(proc)
        return proc

    def log_tail(self, log_name: str, lines: int = 10) -> str:
        try:
            text = stack.log_file(self.settings, log_name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        for proc in self._procs:
            stop_process(proc)
        for comp in reversed(self._components):
            if not stack.is_kafka(comp):
                with contextlib.suppress(PlaygroundError, OSError, psutil.Error):
                    stack.stop(comp, self.settings)
        with contextlib.suppress(PlaygroundError, OSError, psutil.Error):
            # Last, and all at once: a cluster's last node alone cannot finish shutting down.
            stack.stop_together([c for c in self._components if stack.is_kafka(c)], self.settings)
        self._components.clear()
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)


def kill_group(pid: int, timeout_s: float = 15.0) -> None:
    """SIGKILL the process group led by ``pid`` (started with its own session) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=timeout_s)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; its own session, so its children too."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
