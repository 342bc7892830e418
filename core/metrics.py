"""Prometheus metrics: every series defined once, and where each process serves them.

Each metric is created here, once per process, in prometheus-client's default registry, and
every user binds it to its ``component`` label (:func:`consumer_metrics`,
:func:`producer_metrics`). Running several sinks in one process (the tests do) reuses the
same objects, two components being two label values of one series; and a second import of
this module (``importlib.reload``, or the file reached under another name) finds the
metrics already registered and takes them instead of failing with "Duplicated timeseries".

Every long-running process serves ``/metrics``: the REST service on its own port, the
others through :func:`serve_metrics`, which also writes ``<run_dir>/metrics/<component>.json``
(``{"component", "url", "pid"}``). :func:`metrics_targets` lists the live ones, and
:func:`write_file_sd` turns them into a Prometheus ``file_sd`` targets file.

Label values are bounded: ``reason`` is a :data:`~.validation.REJECTION_KINDS` kind, never the
free-text reason (which quotes the input); ``route`` is the route's template
(``/features/{entity}/{entity_id}``), never the requested path.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.simple_server import WSGIServer

import numpy as np
import psutil
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings
from dataflow_playground.core.validation import REJECTION_KINDS, RejectionKind

# From a few ms (a stream worker keeping up) to an hour (a backlog, or replayed history).
FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     300.0, 900.0, 3600.0, float("inf"))
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   float("inf"))

M = TypeVar("M", bound=MetricWrapperBase)


def _metric(kind: type[M], name: str, doc: str, labels: list[str], **kwargs: Any) -> M:
    """The metric ``name`` of the default registry: the one registered before, else a new one."""
    # prometheus-client has no public lookup by name (its registry maps every sample name).
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        if not isinstance(existing, kind):
            raise TypeError(f"metric {name} is registered as {type(existing).__name__}, not {kind.__name__}")
        return existing
    return kind(name, doc, labels, **kwargs)


EVENTS_RECEIVED = _metric(
    Counter, "playground_events_received_total",
    "Records read from the input (Kafka records, REST or gRPC records), good or bad.", ["component"])
EVENTS_STORED = _metric(
    Counter, "playground_events_stored_total",
    "Events taken: rows newly stored (sink, services), events processed (stream workers).", ["component"])
EVENTS_SENT = _metric(Counter, "playground_events_sent_total", "Events handed to the Kafka producer.",
                      ["component"])
EVENTS_ACKNOWLEDGED = _metric(Counter, "playground_events_acknowledged_total",
                              "Events Kafka acknowledged (acks=all).", ["component"])
SEND_ERRORS = _metric(Counter, "playground_send_errors_total",
                      "Events the producer gave up on, by the client's error class.", ["component", "error"])
DEAD_LETTERS = _metric(Counter, "playground_dead_letters_total",
                       "Records refused and dead-lettered, by the kind of fault.", ["component", "reason"])
DUPLICATES = _metric(Counter, "playground_duplicates_total",
                     "Valid records not stored because their event_id already was.", ["component"])
RETRIES = _metric(Counter, "playground_retries_total", "Operations tried again after a transient error.",
                  ["component"])
CONSUMER_LAG = _metric(Gauge, "playground_consumer_lag_records",
                       "Records in the partition not yet read by this process (highwater - position).",
                       ["component", "topic", "partition"])
FRESHNESS = _metric(Histogram, "playground_freshness_seconds",
                    "Wall clock minus event time when an event's result was stored or written.",
                    ["component"], buckets=FRESHNESS_BUCKETS)
REQUEST_DURATION = _metric(Histogram, "playground_request_duration_seconds", "HTTP request latency.",
                           ["component", "method", "route", "status"], buckets=REQUEST_BUCKETS)

_COMPONENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class MetricsError(PlaygroundError):
    """The metrics endpoint could not be served."""


def check_component(component: str) -> str:
    """``component`` if it is a usable name (it names a file and labels every series)."""
    if not _COMPONENT_NAME.fullmatch(component):
        raise ValueError(f"component must be 1-64 letters, digits, '_', '.' or '-', got {component!r}")
    return component


def observe_many(histogram: Histogram, values: Iterable[float] | np.ndarray) -> None:
    """Observe every value of ``values`` (a bound histogram child) in one pass.

    ``Histogram.observe`` costs a few microseconds per call (a lock per increment), too much
    per event at the sink's rate; this counts the values into the same buckets with numpy and
    adds each bucket's count once. prometheus-client keeps per-bucket (not cumulative)
    counts in ``_buckets`` and the total in ``_sum``; tests/core/test_metrics.py checks that the
    result equals one ``observe`` per value.
    """
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    # observe() puts a value in the first bucket whose bound is >= it: searchsorted 'left'.
    counts = np.bincount(np.searchsorted(bounds, arr, side="left"), minlength=len(bounds))
    for i, n in enumerate(counts[:len(bounds)]):
        if n:
            histogram._buckets[i].inc(int(n))
    histogram._sum.inc(float(arr.sum()))


@dataclass(frozen=True)
class ConsumerMetrics:
    """The series of one consuming component (the sink, a stream worker, a service), bound once."""

    component: str
    received: Any
    stored: Any
    duplicates: Any
    retries: Any
    freshness: Any

    def dead_letter(self, reason: RejectionKind, n: int = 1) -> None:
        DEAD_LETTERS.labels(self.component, reason).inc(n)

    def lag(self, topic: str, partition: int, records: int) -> None:
        CONSUMER_LAG.labels(self.component, topic, str(partition)).set(max(records, 0))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this process no longer reads (a rebalance)."""
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(self.component, topic, str(partition))


def consumer_metrics(component: str) -> ConsumerMetrics:
    """The bound series of ``component``; its counters exist (at 0) from now on, every dead-letter
    reason included, so a dashboard's rate() has a series before the first event."""
    check_component(component)
    for reason in REJECTION_KINDS:
        DEAD_LETTERS.labels(component, reason)
    return ConsumerMetrics(component, EVENTS_RECEIVED.labels(component), EVENTS_STORED.labels(component),
                           DUPLICATES.labels(component), RETRIES.labels(component),
                           FRESHNESS.labels(component))


@dataclass(frozen=True)
class ProducerMetrics:
    component: str
    sent: Any
    acknowledged: Any
    retries: Any

    def error(self, exc: BaseException) -> None:
        # The class name, not the message: the client's error classes are a fixed set.
        SEND_ERRORS.labels(self.component, type(exc).__name__).inc()


def producer_metrics(component: str) -> ProducerMetrics:
    check_component(component)
    return ProducerMetrics(component, EVENTS_SENT.labels(component), EVENTS_ACKNOWLEDGED.labels(component),
                           RETRIES.labels(component))


# --- serving and finding the endpoints ------------------------------------------------------

_SERVERS: dict[int, tuple[WSGIServer, str]] = {}


def metrics_dir(settings: Settings) -> Path:
    return settings.run_dir / "metrics"


def register_target(settings: Settings, component: str, url: str) -> Path:
    """Record that this process serves ``component``'s metrics at ``url``; removed at exit."""
    folder = metrics_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    # One file per process: a second process serving the same component (a `playground demo`
    # sink beside the stack's own) must neither replace the first's entry nor, on exit, remove it.
    path = folder / f"{check_component(component)}.{os.getpid()}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"component": component, "url": url, "pid": os.getpid()}))
    tmp.replace(path)  # atomic: a reader never sees half a file
    atexit.register(_unregister, path, os.getpid())
    return path


def _unregister(path: Path, pid: int) -> None:
    """Remove ``path`` if it still names process ``pid`` (a successor may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()


def serve_metrics(settings: Settings, component: str, port: int | None = None) -> int:
    """Serve this process's metrics over HTTP; return the port and register the URL.

    Binds ``settings.bind_host`` (loopback, or 0.0.0.0 in a container) on ``port``, else
    ``settings.metrics_port`` (0: any free port). The endpoint answers on ``/metrics``.
    """
    wanted = settings.metrics_port if port is None else port
    check_component(component)
    try:
        server, _thread = start_http_server(wanted, addr=settings.bind_host)
    except OSError as err:
        raise MetricsError(
            f"cannot serve {component}'s metrics on {settings.bind_host}:{wanted}: {err}. Another "
            "process holds the port; set PLAYGROUND_METRICS_PORT to a free one, or 0 for any") from err
    bound = int(server.server_port)
    path = register_target(settings, component, f"http://{settings.host}:{bound}/metrics")
    _SERVERS[bound] = (server, str(path))
    return bound


def stop_serving(port: int) -> None:
    """Stop a server :func:`serve_metrics` started in this process, and unregister it."""
    server, path = _SERVERS.pop(port)
    server.shutdown()
    server.server_close()
    _unregister(Path(path), os.getpid())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _started(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return float("inf")


def metrics_targets(settings: Settings) -> dict[str, str]:
    """``component -> /metrics URL`` of the live processes; stale files are removed.

    Where several live processes serve one component, the longest-running one (the stack's own)
    keeps the name and each later one is listed as ``component@pid``.
    """
    folder = metrics_dir(settings)
    live: list[tuple[float, str, int, str]] = []
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            component, url, pid = str(entry["component"]), str(entry["url"]), int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written (never: the write is atomic) or not ours
        if _alive(pid):
            live.append((_started(pid), component, pid, url))
        else:
            path.unlink(missing_ok=True)
    found: dict[str, str] = {}
    for _t, component, pid, url in sorted(live):
        found[component if component not in found else f"{component}@{pid}"] = url
    return found


def file_sd_path(settings: Settings) -> Path:
    return settings.run_dir / "prometheus" / "targets.json"


def write_file_sd(settings: Settings, path: Path | None = None) -> tuple[Path, dict[str, str]]:
    """Write the live targets as a Prometheus ``file_sd`` file; return it and the targets.

    Each target gets the label ``process`` (its component): the series carry ``component``
    themselves, and a target label of the same name would be renamed ``exported_component``.
    """
    targets = metrics_targets(settings)
    path = path or file_sd_path(settings)
    groups = []
    for component, url in targets.items():
        rest = url.split("://", 1)[-1]
        address, _, metrics_path = rest.partition("/")
        groups.append({"targets": [address],
                       "labels": {"process": component, "__metrics_path__": "/" + metrics_path}})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=2) + "\n")
    tmp.replace(path)  # Prometheus re-reads the file on change; never a half-written one
    return path, targets
