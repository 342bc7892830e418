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

from dataflow_playground.app import stack_settings
from dataflow_playground.core import kafka_admin, kafka_inspect, kafka_native
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


def _cluster_node(node_id: int) -> Component:
    """Node ``node_id`` of the native cluster (``brokers=3``; core/kafka_native.py).

    Healthy = its listener answers and the cluster counts its broker live (not fenced). No node
    gets there alone (no quorum), so the nodes are started together (:func:`start_together`).
    """
    def node(s: Settings) -> kafka_native.KafkaNode:
        return kafka_native.nodes(s.model_copy(update={"brokers": 3}))[node_id - 1]

    def ports(s: Settings) -> dict[str, int]:
        n = node(s)
        return {n.port_setting: n.port, n.controller_port_setting: n.controller_port}

    return Component(
        name="kafka" if node_id == 1 else f"kafka-{node_id}",
        ports=ports,
        command=lambda s: kafka_native.node_command(s, node(s)),
        healthy=lambda s: kafka_admin.broker_serving(f"{s.host}:{node(s).port}", node_id),
        main_port=lambda s: node(s).port,
    )


KAFKA_CLUSTER = [_cluster_node(1), _cluster_node(2), _cluster_node(3)]


def kafka_components(settings: Settings) -> list[Component]:
    """The Kafka node(s) ``settings.brokers`` asks for: KAFKA, or the cluster's three."""
    return list(KAFKA_CLUSTER) if settings.brokers == 3 else [KAFKA]


def is_kafka(comp: Component) -> bool:
    return comp is KAFKA or any(comp is c for c in KAFKA_CLUSTER)
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
        # A heartbeat alone would look healthy without a broker: a worker needs both.
        healthy=lambda s: worker_healthy(s, worker_id) and kafka_admin.kafka_ready(s.bootstrap_servers),
        main_port=lambda s: 0,
    )


SINK_GROUP = "duckdb-sink"
SINK = Component(
    name="sink",
    ports=lambda s: {},
    # The same entrypoint docker-compose.yml runs; consumes until stopped.
    command=lambda s: [sys.executable, "-m", "dataflow_playground.app.cli", "serve", "sink",
                       "--group", SINK_GROUP],
    # Alive is not enough: a sink that lost the broker or its group stores nothing.
    healthy=lambda s: kafka_inspect.group_members(s.bootstrap_servers, SINK_GROUP) > 0,
    main_port=lambda s: 0,
)
PRODUCER_STALE_S = 10.0


def producer_status_file(settings: Settings) -> Path:
    return settings.run_dir / "producer.status.json"


def _producer_healthy(settings: Settings) -> bool:
    """Its heartbeat is fresh and the broker acknowledged a record within PRODUCER_STALE_S."""
    try:
        st = json.loads(producer_status_file(settings).read_text())
    except (OSError, ValueError):
        return False
    now = time.time()
    return (now - float(st.get("updated_at", 0)) < PRODUCER_STALE_S
            and now - float(st.get("last_ack_at") or 0) < PRODUCER_STALE_S)


PRODUCER = Component(
    name="producer",
    ports=lambda s: {},
    command=lambda s: [sys.executable, "-m", "dataflow_playground.app.cli", "produce",
                       "--rate", str(s.producer_rate), "--seed", str(int(time.time())),
                       "--status-file", str(producer_status_file(s))],
    healthy=_producer_healthy,
    main_port=lambda s: 0,
)




def _dashboard_healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"http://{settings.host}:{settings.dashboard_port}/api/health",
                         timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


DASHBOARD = Component(
    name="dashboard",
    ports=lambda s: {"PLAYGROUND_DASHBOARD_PORT": s.dashboard_port},
    command=lambda s: [sys.executable, "-m", "dataflow_playground.app.cli", "serve", "dashboard"],
    healthy=_dashboard_healthy,
    main_port=lambda s: s.dashboard_port,
)
FEATURES_WORKER = features_worker(0)
# Start order; `down` stops in reverse. `up` adds workers 1.. when asked for more than one.
COMPONENTS: list[Component] = [KAFKA, REST, RPC, FEATURES_WORKER, SINK, DASHBOARD]
MAX_STREAM_WORKERS = 16


def stack_components(settings: Settings, workers: int | None = None,
                     producer: bool | None = None) -> list[Component]:
    """What the stack runs with ``workers`` stream workers (default: the ones started before, or 1)
    and the producer (default: if an earlier ``up --with-producer`` started it)."""
    n = workers if workers is not None else max(1, len(_extra_worker_names(settings)) + 1)
    if producer is None:
        producer = any(p.exists() for p in (pid_file(settings, "producer"), crash_file(settings, "producer")))
    kafka = kafka_components(settings)
    if settings.brokers == 1 and any(pid_file(settings, c.name).exists() for c in KAFKA_CLUSTER[1:]):
        kafka = [KAFKA, *KAFKA_CLUSTER[1:]]  # nodes left by a cluster run: `down` stops them too
    return [*kafka, *(c for c in COMPONENTS if c is not KAFKA), *(features_worker(i) for i in range(1, n)),
            *([PRODUCER] if producer else [])]


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


def crash_file(settings: Settings, name: str) -> Path:
    """Left where a PID file was when its process died on its own (not stopped by us)."""
    return settings.run_dir / f"{name}.crashed"


def read_pid(settings: Settings, name: str) -> PidRecord | None:
    """The live record for ``name``; a stale or unreadable file is removed.

    A stale file means the process died without ``down``: it is kept as ``<name>.crashed``
    so ``status`` can say so (until the next ``up`` or ``down``).
    """
    path = pid_file(settings, name)
    if not path.exists():
        return None
    try:
        rec = PidRecord(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not rec.alive():
        path.replace(crash_file(settings, name))
        return None
    return rec


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free right now on ``host`` (bound together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


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
    crashed: bool = False  # its PID file was there but the process had died on its own
    log: Path | None = None
    broker: BrokerStatus | None = None  # a native Kafka node: what the cluster says of it


@dataclass(frozen=True)
class BrokerStatus:
    """A Kafka node as the cluster's metadata describes it (``status``)."""

    node_id: int
    registered: bool  # the controller has its registration (a dead node's stays until fenced)
    fenced: bool  # registered but not serving: it stopped heartbeating, or is shutting down
    active_controller: bool  # it leads the KRaft metadata quorum
    leads: int  # partitions it leads
    # Of those, partitions with fewer in-sync replicas than replicas (Kafka's per-broker
    # UnderReplicatedPartitions); the cluster's count is their sum over the brokers.
    under_replicated: int


def kafka_health(settings: Settings) -> kafka_admin.ClusterHealth | None:
    """The native Kafka nodes' view of their cluster (asked of the live ones); None if none runs."""
    if settings.bootstrap_servers_override:
        return None
    live = [c.main_port(settings) for c in kafka_components(settings) if read_pid(settings, c.name)]
    if not live:
        return None
    return kafka_admin.cluster_health(",".join(f"{settings.host}:{p}" for p in live))


def _broker_status(comp: Component, settings: Settings,
                   health: kafka_admin.ClusterHealth | None) -> BrokerStatus | None:
    if health is None or not is_kafka(comp):
        return None
    node_id = 1 if comp.name == "kafka" else int(comp.name.rsplit("-", 1)[1])
    b = health.broker(node_id)
    return BrokerStatus(node_id=node_id, registered=b is not None, fenced=bool(b and b.fenced),
                        active_controller=health.controller_id == node_id, leads=b.leads if b else 0,
                        under_replicated=b.under_replicated if b else 0)


def _wait_healthy(comp: Component, settings: Settings, proc: subprocess.Popen[bytes]) -> None:
    def check() -> bool:
        if proc.poll() is not None:  # not retried: a dead process will not become healthy
            tail = tail_log(log_file(settings, comp.name))
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


LOG_ROTATE_BYTES = 20 * 2**20


def tail_log(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(comp: Component, settings: Settings) -> tuple[PidRecord, bool]:
    """Start ``comp`` unless it already runs; return its record and whether it was started."""
    rec, proc = _launch(comp, settings)
    if proc is None:
        return rec, False
    try:
        _wait_healthy(comp, settings, proc)
    except BaseException:
        _stop_pid(rec, settings.shutdown_timeout_s)
        pid_file(settings, comp.name).unlink(missing_ok=True)
        raise
    return rec, True


def start_together(comps: list[Component], settings: Settings) -> dict[str, bool]:
    """Start those of ``comps`` not running, then wait until each is healthy; {name: started_now}.

    For the nodes of a Kafka cluster, none of which becomes healthy before a quorum of them
    runs. Every port is checked before anything starts; if one fails, those started here stop.
    """
    idle = [c for c in comps if read_pid(settings, c.name) is None]
    for comp in idle:
        for setting, port in comp.ports(settings).items():
            if not port_free(settings.host, port):
                raise PortInUseError(port, setting, comp.name)
    launched: list[tuple[Component, PidRecord, subprocess.Popen[bytes]]] = []
    try:
        for comp in idle:
            rec, proc = _launch(comp, settings)
            if proc is not None:
                launched.append((comp, rec, proc))
        for comp, _rec, proc in launched:
            _wait_healthy(comp, settings, proc)
    except BaseException:
        stop_together([c for c, _r, _p in launched], settings)
        raise
    fresh = {c.name for c, _r, _p in launched}
    return {c.name: c.name in fresh for c in comps}


def _launch(comp: Component, settings: Settings) -> tuple[PidRecord, subprocess.Popen[bytes] | None]:
    """Spawn ``comp`` unless it runs; its record and the new process (None if it already ran)."""
    rec = read_pid(settings, comp.name)
    if rec is not None:
        return rec, None
    crash_file(settings, comp.name).unlink(missing_ok=True)
    for setting, port in comp.ports(settings).items():
        if not port_free(settings.host, port):
            raise PortInUseError(port, setting, comp.name)
    cmd = comp.command(settings)
    log = log_file(settings, comp.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and log.stat().st_size > LOG_ROTATE_BYTES:  # keep one previous log, not all
        log.replace(log.with_name(log.name + ".1"))
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env(settings), start_new_session=True)
    rec = PidRecord(pid=proc.pid, port=comp.main_port(settings),
                    create_time=psutil.Process(proc.pid).create_time(), started_at=time.time())
    pid_file(settings, comp.name).write_text(json.dumps(rec.__dict__))
    return rec, proc


def up(settings: Settings, components: list[Component] | None = None,
       on_event: Callable[[str], None] = lambda _msg: None,
       stream_workers: int | None = None, with_producer: bool = False) -> dict[str, bool]:
    """Start every component not yet running, create the topics; {name: started_now}.

    ``stream_workers``: run exactly that many stream workers (stopping extra ones: their
    partitions move to the others); ``None`` keeps what runs, at least one.
    """
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    check_brokers(settings)
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
    if components is None or not stack_settings.state_file(settings).exists():
        stack_settings.remember(settings)  # a partial `up` (one command's broker) keeps what the stack's says
    todo = components or stack_components(settings, stream_workers, with_producer or None)
    cluster = [c for c in todo if is_kafka(c)]
    for comp in todo:
        if is_kafka(comp) and settings.bootstrap_servers_override:
            if comp is cluster[0]:
                on_event(f"kafka: using external broker {settings.bootstrap_servers}")
            continue
        if len(cluster) > 1 and comp in cluster:
            if comp is not cluster[0]:
                continue  # started with the first
            on_event(f"{', '.join(c.name for c in cluster)}: starting together (a quorum needs them all)")
            fresh = start_together(cluster, settings)
            for c in cluster:
                rec = read_pid(settings, c.name)
                started[c.name] = fresh[c.name]
                on_event(f"{c.name}: {'started' if fresh[c.name] else 'already running'} "
                         f"(pid {rec.pid if rec else '-'})")
        else:
            on_event(f"{comp.name}: starting")
            rec, now = start(comp, settings)
            started[comp.name] = now
            on_event(f"{comp.name}: {'started' if now else 'already running'} (pid {rec.pid})")
        if is_kafka(comp):
            kafka_admin.ensure_topics(settings.bootstrap_servers, kafka_admin.default_topics(settings))
    return started


def check_brokers(settings: Settings) -> None:
    """Refuse to change the number of Kafka nodes under a running stack (StackError).

    A running single node cannot join a cluster, nor a cluster node run alone: stop first.
    """
    try:
        saved = json.loads(stack_settings.state_file(settings).read_text()).get("brokers", 1)
    except (OSError, ValueError, AttributeError):
        return
    running = [c.name for c in (KAFKA, *KAFKA_CLUSTER[1:]) if read_pid(settings, c.name)]
    if saved != settings.brokers and running:
        raise StackError(f"Kafka runs with {saved} broker(s) ({', '.join(running)}); stop the stack with "
                         f"'playground down' before 'playground up --brokers {settings.brokers}'")


def status(settings: Settings) -> list[ComponentStatus]:
    out = []
    health = kafka_health(settings)
    for comp in stack_components(settings):
        rec = read_pid(settings, comp.name)
        external = comp is KAFKA and settings.bootstrap_servers_override is not None
        healthy = comp.healthy(settings) if (rec or external) else False
        out.append(ComponentStatus(
            name=comp.name, running=rec is not None or external, healthy=healthy,
            pid=rec.pid if rec else None, port=comp.main_port(settings),
            uptime_s=time.time() - rec.started_at if rec else None,
            crashed=rec is None and crash_file(settings, comp.name).exists(),
            log=log_file(settings, comp.name),
            broker=_broker_status(comp, settings, health),
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
        if (sink := read_pid(settings, SINK.name)) is not None:
            # DuckDB lets no other process open the file meanwhile; the sink logs its own figures.
            return StoreStatus(path, None, f"being written by the stack's sink (pid {sink.pid}); its "
                                           "figures after every commit: 'playground logs sink'")
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


def stop_together(comps: list[Component], settings: Settings) -> list[str]:
    """SIGTERM every running one of ``comps`` at once, then wait for each; the names stopped.

    The nodes of a Kafka cluster: stopped one by one, the last would wait for a quorum to
    finish its controlled shutdown until SIGKILLed (measured: 60 s and more).
    """
    recs = [(c, rec) for c in comps if (rec := read_pid(settings, c.name)) is not None]
    for _c, rec in recs:
        _signal(rec, signal.SIGTERM)
    for c, rec in recs:
        _stop_pid(rec, settings.shutdown_timeout_s)
        pid_file(settings, c.name).unlink(missing_ok=True)
    return [c.name for c, _rec in recs]


def _signal(rec: PidRecord, sig: signal.Signals) -> None:
    """``sig`` to the process group we started ``rec`` in (or the process alone)."""
    if not rec.alive():
        return
    try:
        pgid = os.getpgid(rec.pid)
        if pgid == rec.pid:
            os.killpg(pgid, sig)
        else:
            os.kill(rec.pid, sig)
    except ProcessLookupError:
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
    kafka: list[Component] = []
    for comp in reversed(stack_components(settings)):
        rec = read_pid(settings, comp.name)
        if crash_file(settings, comp.name).exists():
            on_event(f"{comp.name}: had crashed; its log stays at {log_file(settings, comp.name)}")
            crash_file(settings, comp.name).unlink(missing_ok=True)
        if rec is None:
            continue
        on_event(f"{comp.name}: stopping pid {rec.pid}")
        if is_kafka(comp):
            kafka.append(comp)  # last in start order: stopped together below
            continue
        _stop_pid(rec, settings.shutdown_timeout_s)
        pid_file(settings, comp.name).unlink(missing_ok=True)
        stopped.append(comp.name)
    stopped += stop_together(kafka, settings)
    stack_settings.forget(settings)
    return stopped
