"""The native stack: Kafka and the services as background processes.

Each component gets a PID file (JSON: pid, port, process start time, command)
and a log under ``<data_dir>/run``. A PID file whose process is gone, or whose
PID now belongs to another process, is stale and is cleared. Only processes
recorded in our own PID files are ever signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from dataflow_playground.core import kafka_admin, kafka_native
from dataflow_playground.core.errors import PlaygroundError, PortInUseError, StackError
from dataflow_playground.core.settings import Settings, child_env
from dataflow_playground.features.online_store import worker_healthy
from dataflow_playground.features.stream.registry import ENGINES
from dataflow_playground.services.rpc import server as rpc_server
from dataflow_playground.services.rpc.server import ready as rpc_ready
from dataflow_playground.storage.duckdb_store import StoreFigures, read_figures


@dataclass(frozen=True)
class Component:
    name: str
    ports: Callable[[Settings], dict[str, int]]  # setting env var -> port, all must be free
    command: Callable[[Settings], list[str]]
    healthy: Callable[[Settings], bool]
    main_port: Callable[[Settings], int]


def _rest_healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.rest_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _rest_command(settings: Settings) -> list[str]:
    # The same entrypoint docker-compose.yml runs.
    return [sys.executable, "-m", "dataflow_playground.app.cli", "serve", "rest"]


def _rpc_command(settings: Settings) -> list[str]:
    # The same entrypoint docker-compose.yml runs (there with --host 0.0.0.0).
    return [sys.executable, "-m", rpc_server.__name__, "--port", str(settings.rpc_port)]


def _rpc_healthy(settings: Settings) -> bool:
    return rpc_ready(f"{settings.host}:{settings.rpc_port}", timeout_s=1.0)


KAFKA = Component(
    name="kafka",
    ports=lambda s: {"PLAYGROUND_KAFKA_PORT": s.kafka_port,
                     "PLAYGROUND_KAFKA_CONTROLLER_PORT": s.kafka_controller_port},
    command=kafka_native.broker_command,
    healthy=lambda s: kafka_admin.kafka_ready(s.bootstrap_servers),
    main_port=lambda s: s.kafka_port,
)
REST = Component(
    name="rest",
    ports=lambda s: {"PLAYGROUND_REST_PORT": s.rest_port},
    command=_rest_command,
    healthy=_rest_healthy,
    main_port=lambda s: s.rest_port,
)
RPC = Component(
    name="rpc",
    ports=lambda s: {"PLAYGROUND_RPC_PORT": s.rpc_port},
    command=_rpc_command,
    healthy=_rpc_healthy,
    main_port=lambda s: s.rpc_port,
)


def features_worker(index: int) -> Component:
    """Stream worker ``index`` (faust, or kafka-python with PLAYGROUND_STREAM_ENGINE).

    Every worker joins the same consumer group and they share the partitions; each is a
    static member under its own id, so a restarted one gets its partitions straight back.
    No port of its own; healthy = a fresh heartbeat of its own in the online store.
    """
    worker_id = f"features-w{index}"
    return Component(
        name="features-worker" if index == 0 else f"features-worker-{index}",
        ports=lambda s: {},
        command=lambda s: [sys.executable, "-m", ENGINES[s.stream_engine].module,
                           "--worker-id", worker_id],
        healthy=lambda s: worker_healthy(s, worker_id),
        main_port=lambda s: 0,
    )


FEATURES_WORKER = features_worker(0)
# Start order; `down` stops in reverse. `up` adds workers 1.. when asked for more than one.
COMPONENTS: list[Component] = [KAFKA, REST, RPC, FEATURES_WORKER]
MAX_STREAM_WORKERS = 16


def stack_components(settings: Settings, workers: int | None = None) -> list[Component]:
    """What the stack runs with ``workers`` stream workers (default: the ones started before, or 1)."""
    n = workers if workers is not None else max(1, len(_extra_worker_names(settings)) + 1)
    return [*COMPONENTS, *(features_worker(i) for i in range(1, n))]


def _extra_worker_names(settings: Settings) -> list[str]:
    """Stream workers beyond the first that have a PID file (started by an earlier `up`)."""
    run = settings.run_dir
    if not run.exists():
        return []
    return sorted((p.stem for p in run.glob("features-worker-*.pid")), key=lambda n: int(n.rsplit("-", 1)[1]))


# --- PID files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PidRecord:
    pid: int
    port: int
    create_time: float
    started_at: float

    def alive(self) -> bool:
        """The recorded process still runs and is the very process we started."""
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1.0 and proc.status() != "zombie"
        except psutil.Error:
            return False


def pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / "logs" / f"{name}.log"


def read_pid(settings: Settings, name: str) -> PidRecord | None:
    """The live record for ``name``; a stale or unreadable file is removed."""
    path = pid_file(settings, name)
    if not path.exists():
        return None
    try:
        rec = PidRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not rec.alive():
        path.unlink(missing_ok=True)
        return None
    return rec


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --- up / status / down --------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    port: int
    uptime_s: float | None


def _wait_healthy(comp: Component, settings: Settings, proc: subprocess.Popen[bytes]) -> None:
    def check() -> bool:
        if proc.poll() is not None:  # not retried: a dead process will not become healthy
            tail = _tail(log_file(settings, comp.name))
            raise StackError(f"{comp.name} exited with code {proc.returncode} while starting. "
                             f"Last log lines:\n{tail}")
        return comp.healthy(settings)

    healthy = Retrying(
        stop=stop_after_delay(settings.startup_timeout_s),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_result(lambda ok: not ok),
        retry_error_callback=lambda _state: False,
    )(check)
    if healthy:
        return
    raise StackError(f"{comp.name} did not become healthy within {settings.startup_timeout_s:.0f}s; "
                     f"see {log_file(settings, comp.name)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(comp: Component, settings: Settings) -> tuple[PidRecord, bool]:
    """Start ``comp`` unless it already runs; return its record and whether it was started."""
    rec = read_pid(settings, comp.name)
    if rec is not None:
        return rec, False
    for setting, port in comp.ports(settings).items():
        if not port_free(settings.host, port):
            raise PortInUseError(port, setting, comp.name)
    cmd = comp.command(settings)
    log = log_file(settings, comp.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(settings), start_new_session=True)
    rec = PidRecord(pid=proc.pid, port=comp.main_port(settings),
                    create_time=psutil.Process(proc.pid).create_time(), started_at=time.time())
    pid_file(settings, comp.name).write_text(json.dumps(rec.__dict__))
    try:
        _wait_healthy(comp, settings, proc)
    except BaseException:
        _stop_pid(rec, settings.shutdown_timeout_s)
        pid_file(settings, comp.name).unlink(missing_ok=True)
        raise
    return rec, True


def up(settings: Settings, components: list[Component] | None = None,
       on_event: Callable[[str], None] = lambda _msg: None,
       stream_workers: int | None = None) -> dict[str, bool]:
    """Start every component not yet running, create the topics; {name: started_now}.

    ``stream_workers``: run exactly that many stream workers (stopping extra ones: their
    partitions move to the others); ``None`` keeps what runs, at least one.
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    if stream_workers is not None:
        if not 1 <= stream_workers <= MAX_STREAM_WORKERS:
            raise ValueError(f"stream workers must be between 1 and {MAX_STREAM_WORKERS}, "
                             f"got {stream_workers}")
        for name in _extra_worker_names(settings):
            if int(name.rsplit("-", 1)[1]) >= stream_workers and (rec := read_pid(settings, name)):
                on_event(f"{name}: stopping pid {rec.pid} (its partitions move to the others)")
                _stop_pid(rec, settings.shutdown_timeout_s)
                pid_file(settings, name).unlink(missing_ok=True)
    started: dict[str, bool] = {}
    for comp in components or stack_components(settings, stream_workers):
        if comp is KAFKA and settings.bootstrap_servers_override:
            on_event(f"kafka: using external broker {settings.bootstrap_servers}")
            continue
        on_event(f"{comp.name}: starting")
        rec, now = start(comp, settings)
        started[comp.name] = now
        on_event(f"{comp.name}: {'started' if now else 'already running'} (pid {rec.pid})")
        if comp is KAFKA:
            kafka_admin.ensure_topics(settings.bootstrap_servers, kafka_admin.default_topics(settings))
    return started


def status(settings: Settings) -> list[ComponentStatus]:
    out = []
    for comp in stack_components(settings):
        rec = read_pid(settings, comp.name)
        external = comp is KAFKA and settings.bootstrap_servers_override is not None
        healthy = comp.healthy(settings) if (rec or external) else False
        out.append(ComponentStatus(
            name=comp.name, running=rec is not None or external, healthy=healthy,
            pid=rec.pid if rec else None, port=comp.main_port(settings),
            uptime_s=time.time() - rec.started_at if rec else None,
        ))
    return out


@dataclass(frozen=True)
class StoreStatus:
    """The DuckDB store's figures, or why they cannot be read now (``note``)."""

    path: Path
    figures: StoreFigures | None
    note: str | None = None


def store_status(settings: Settings) -> StoreStatus:
    """Read the store read-only; never fails ``status``: a missing or busy store is a note.

    DuckDB lets no other process open the file while a sink writes it, so during a run the
    note says so (the sink prints the same figures on every commit).
    """
    path = settings.store_path
    if not path.exists():
        return StoreStatus(path, None, "not created yet; the Kafka -> DuckDB sink creates it "
                                       "('playground serve sink')")
    try:
        return StoreStatus(path, read_figures(path))
    except PlaygroundError as err:
        return StoreStatus(path, None, str(err))


def _stop_pid(rec: PidRecord, timeout_s: float) -> None:
    if not rec.alive():
        return
    try:
        pgid = os.getpgid(rec.pid)
    except ProcessLookupError:
        return
    # We started it with start_new_session, so its group is its own: signal the group.
    if pgid == rec.pid:
        os.killpg(pgid, signal.SIGTERM)
    else:
        os.kill(rec.pid, signal.SIGTERM)
    try:
        psutil.Process(rec.pid).wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        if pgid == rec.pid:
            os.killpg(pgid, signal.SIGKILL)
        else:
            os.kill(rec.pid, signal.SIGKILL)
        psutil.Process(rec.pid).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass


def stop(comp: Component, settings: Settings) -> bool:
    """Stop one component if it runs (e.g. only what a command started); True if it ran."""
    rec = read_pid(settings, comp.name)
    if rec is None:
        return False
    _stop_pid(rec, settings.shutdown_timeout_s)
    pid_file(settings, comp.name).unlink(missing_ok=True)
    return True


def down(settings: Settings, on_event: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Stop every running component in reverse start order; return the names stopped."""
    stopped = []
    for comp in reversed(stack_components(settings)):
        rec = read_pid(settings, comp.name)
        if rec is None:
            continue
        on_event(f"{comp.name}: stopping pid {rec.pid}")
        _stop_pid(rec, settings.shutdown_timeout_s)
        pid_file(settings, comp.name).unlink(missing_ok=True)
        stopped.append(comp.name)
    return stopped
