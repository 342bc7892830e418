"""``playground bench stream``: the partitioned, checkpointed stream engines, per engine and worker count.

For every engine x worker count it measures, on throwaway topics and a fresh application id:

- **throughput**: a group of N workers catching up on a topic pre-filled with ``events``
  events, from the moment every task has an owner until both stages have processed them
  all (median of ``repeats``), and the workers' CPU seconds per 1M events;
- **freshness** at ``rate`` events/s offered: a paced producer on a fresh topic, the group
  already running and caught up. An event's values are fully visible once both its stage
  rows (``user`` and ``merchant``) are, so its freshness is
  ``max(visible over its two stages) - produced`` (Kafka CreateTime), in ms;
- **recovery**: on the group that just caught up, a paced producer at ``rate`` events/s,
  then worker 0 is SIGKILLed (if it owns no task at that moment, having lost them to a
  session timeout under load, the first worker that does). With one worker it is restarted
  under its static id; with more the survivors take its tasks over (after the group's
  session timeout, 3 s). ``recovery_s`` = from the SIGKILL
  until every moved task (both stages)
  is owned again and has read everything that was in its input at the kill (``None``, shown
  as "not within T s", if that did not happen within ``--recovery-timeout``; a median counts
  it as longer than any time); ``reread_records`` = what the new owners read again that the
  dead worker had already read (its last reported ``position`` of each moved task minus the
  new owner's ``restored_position``, clipped at 0). Beside it, ``full_replay_s``: the time the
  same group took for the whole N-event topic, which is what a design without checkpoints
  pays on every restart.

Which tasks moved is read from the online store's task counters, with no help from the
workers: a task a live worker owns keeps advancing after the kill; a task of the dead worker
stands still until a new owner restores it (its ``restored_position`` changes, or its
``read_since_restore`` starts again from 0).

The load average before and after each measurement is recorded: on a shared 2-core machine
the broker, the producer and the workers compete for the same cores.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, TopicPartition
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dataflow_playground.app import stack
from dataflow_playground.app.bench.stream_profile import PARTS, REST, SAMPLING_NOTE, Profiler
from dataflow_playground.app.bench.stream_profile import RATE_HZ as PROFILE_RATE_HZ
from dataflow_playground.app.results import markdown_table, median, write_results
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.processes import die_with_parent
from dataflow_playground.core.settings import Settings, child_env
from dataflow_playground.features.online_store import OnlineStoreReader
from dataflow_playground.features.stream.process import StreamWorkerError, WorkerGroup
from dataflow_playground.features.stream.registry import ENGINES
from dataflow_playground.features.stream.state import BUILD as OPERATORS_BUILD
from dataflow_playground.features.stream.worker import REPARTITION_SUFFIX, internal_topics
from dataflow_playground.producers.generator import (
    DEFAULT_START_MS,
    GeneratorConfig,
    encode_event,
    generate_table,
)
from dataflow_playground.producers.to_kafka import ProduceStats, make_producer, produce

TARGET_EVENTS_PER_S_PER_WORKER = 20_000.0  # with one worker
TARGET_FRESHNESS_P99_MS = 50.0
TARGET_FRESHNESS_MAX_MS = 250.0
TARGET_RECOVERY_S = 5.0
DEFAULT_RATE = 2_000.0
# Events each engine's client alone reads (:func:`client_alone`): its rate is steady long before.
CLIENT_ALONE_EVENTS = 200_000
CLIENT_ALONE_START_S = 30.0  # its time budget: starting and joining a group, then reading
CLIENT_ALONE_SLOWEST_EVENTS_PER_S = 1_000.0  # at this rate at least (faust: ~5,000 here)
STAGES = ("user", "merchant")
# Every entry (one engine x worker count) has at least these keys.
ENTRY_KEYS = ("engine", "workers", "events_per_s", "cpu_s_per_million", "freshness_p50_ms",
              "freshness_p99_ms", "freshness_max_ms", "recovery_s", "reread_records", "full_replay_s",
              "repeats", "loadavg_before", "loadavg_after")
_POLL_S = 0.05
Load = tuple[float, float, float]


class StreamBenchError(PlaygroundError):
    """A stream benchmark argument is out of range, or a measurement could not be made."""


# -- arguments ---------------------------------------------------------------------------------

def _items(values: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` -> ``["a", "b", "c"]`` (blanks dropped)."""
    raw = [values] if isinstance(values, str) else list(values)
    return [part.strip() for v in raw for part in v.split(",") if part.strip()]


def parse_workers(values: str | Sequence[str]) -> list[int]:
    """Worker counts, comma-separated: positive integers, each once, in the order given."""
    out: list[int] = []
    for item in _items(values):
        try:
            n = int(item)
        except ValueError:
            raise StreamBenchError(f"worker count {item!r} is not an integer (e.g. --workers 1,2)") from None
        if n < 1:
            raise StreamBenchError(f"worker count {n} must be at least 1")
        if n in out:
            raise StreamBenchError(f"worker count {n} is given twice")
        out.append(n)
    if not out:
        raise StreamBenchError("no worker count given (e.g. --workers 1,2)")
    return out


def parse_engines(values: str | Sequence[str]) -> list[str]:
    """Engine names, comma-separated, each one of the registered engines, each once."""
    out: list[str] = []
    for item in _items(values):
        if item not in ENGINES:
            raise StreamBenchError(f"unknown stream engine {item!r}; use one of {', '.join(ENGINES)}")
        if item in out:
            raise StreamBenchError(f"engine {item!r} is given twice")
        out.append(item)
    if not out:
        raise StreamBenchError(f"no engine given; use one or more of {', '.join(ENGINES)}")
    return out


@dataclass(frozen=True)
class StreamBenchConfig:
    events: int = 1_000_000
    workers: tuple[int, ...] = (1, 2)
    engines: tuple[str, ...] = tuple(ENGINES)
    repeats: int = 3
    rate: float = DEFAULT_RATE  # offered events/s in the freshness and recovery phases
    freshness_seconds: float = 20.0
    kill_after_s: float = 3.0  # paced producing before the SIGKILL
    warmup_events: int = 20_000  # an untimed catch-up per engine first; 0 = none
    recovery_timeout_s: float = 120.0
    partitions: int = 3  # of the input topic (the settings'); a group has twice as many tasks
    profile: bool = True  # py-spy on the workers during the first catch-up (stream_profile)

    def __post_init__(self) -> None:
        tasks = 2 * self.partitions
        checks = {
            "--events must be > 0": self.events > 0,
            "--events must be at most 20,000,000": self.events <= 20_000_000,
            "--repeats must be between 1 and 20": 1 <= self.repeats <= 20,
            "--rate must be between 10 and 50,000 events/s": 10 <= self.rate <= 50_000,
            "--freshness-seconds must be between 1 and 600": 1 <= self.freshness_seconds <= 600,
            "--kill-after must be between 0.5 and 60 s": 0.5 <= self.kill_after_s <= 60,
            "--warmup-events must be >= 0": self.warmup_events >= 0,
            "--recovery-timeout must be between 5 and 1,800 s": 5 <= self.recovery_timeout_s <= 1800,
            "--workers: each count must be >= 1": all(w >= 1 for w in self.workers),
            f"--workers: each count must be at most {tasks} (the group's tasks: 2 stages x "
            f"{self.partitions} partitions)": all(w <= tasks for w in self.workers),
            "--workers: give at least one count": bool(self.workers),
            "--workers: each count once": len(set(self.workers)) == len(self.workers),
            f"--engine: each one of {', '.join(ENGINES)}": all(e in ENGINES for e in self.engines),
            "--engine: give at least one engine": bool(self.engines),
            "--engine: each engine once": len(set(self.engines)) == len(self.engines),
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise StreamBenchError("; ".join(bad))

    @property
    def freshness_events(self) -> int:
        return max(int(self.rate * self.freshness_seconds), 100)


# -- the figures, from the numbers -------------------------------------------------------------

@dataclass(frozen=True)
class Freshness:
    values_ms: list[int]  # one per event whose values are fully visible
    incomplete: int  # events with a stage row missing
    # Per stage, the same events' own visibility: where the time goes (the merchant stage
    # waits for the user stage, a second Kafka hop and its own step).
    by_stage_ms: dict[str, list[int]] = field(default_factory=dict)


def event_freshness(rows: Iterable[Sequence[Any]], min_event_id: int = 0,
                    stages: Sequence[str] = STAGES) -> Freshness:
    """Per event, from ``(event_id, stage, produced_ms, visible_ms)`` rows: the moment its values
    are visible in every stage minus when it was produced. A stage seen twice (a task that
    recomputed after a restore) counts from its first visibility; events below ``min_event_id``
    (a warm-in) are left out."""
    first: dict[tuple[int, str], int] = {}
    produced: dict[int, int] = {}
    for eid, stage, prod, vis in rows:
        if eid < min_event_id:
            continue
        key = (eid, stage)
        if key not in first or vis < first[key]:
            first[key] = vis
        produced[eid] = min(produced.get(eid, prod), prod)
    values: list[int] = []
    by_stage: dict[str, list[int]] = {s: [] for s in stages}
    incomplete = 0
    for eid, prod in produced.items():
        seen = [first.get((eid, s)) for s in stages]
        if any(v is None for v in seen):
            incomplete += 1
            continue
        visible = [v for v in seen if v is not None]
        values.append(max(visible) - prod)
        for s, v in zip(stages, visible, strict=True):
            by_stage[s].append(v - prod)
    return Freshness(values, incomplete, by_stage)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    if not values_ms:
        raise StreamBenchError("no event became visible in both stages: no freshness to report")
    a = np.asarray(values_ms, dtype=float)
    return {"samples": int(a.size), "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}


def median_or_none(values: Sequence[float | None]) -> float | None:
    """The median, a ``None`` (did not happen within the timeout) counting as longer than any
    number; ``None`` if the median falls on one."""
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    n = len(ordered)
    if n == 0:
        return None
    mid = ordered[(n - 1) // 2: n // 2 + 1]
    if any(v is None for v in mid):
        return None
    return float(sum(v for v in mid if v is not None) / len(mid))


def reread_records(last_positions: dict[str, int], restored_positions: dict[str, int]) -> dict[str, int]:
    """Per moved task: what its new owner read again that the dead worker had already read
    (the dead worker's last reported position minus the restored one), never below 0."""
    return {t: max(0, last_positions.get(t, 0) - restored) for t, restored in restored_positions.items()}


@dataclass
class RecoveryTracker:
    """Follows every task's counters after a SIGKILL until each moved task is owned and caught up.

    ``before``: the tasks' counters right after the kill (the dead worker's last reports for
    its tasks); ``ends``: the end offset of each task's input partition at the kill.
    """

    before: dict[str, dict[str, int]]
    ends: dict[str, int]
    live: set[str] = field(default_factory=set)  # advanced with no restore: a live worker owns it
    owned_at: dict[str, float] = field(default_factory=dict)  # moved task -> s after the kill
    restored_position: dict[str, int] = field(default_factory=dict)
    caught_up_at: dict[str, float] = field(default_factory=dict)

    def _restored(self, task: str, st: dict[str, int]) -> bool:
        b = self.before.get(task, {})
        return (st.get("restored_position", 0) != b.get("restored_position", 0)
                or st.get("read_since_restore", 0) < b.get("read_since_restore", 0))

    def observe(self, elapsed_s: float, stats: dict[str, dict[str, int]]) -> None:
        for task, st in stats.items():
            if task in self.live or task in self.caught_up_at:
                continue
            if task not in self.owned_at:
                if self._restored(task, st):
                    self.owned_at[task] = elapsed_s
                    self.restored_position[task] = st.get("restored_position", 0)
                elif st.get("position", 0) > self.before.get(task, {}).get("position", 0):
                    self.live.add(task)
                    continue
                else:
                    continue
            if st.get("position", 0) >= self.ends.get(task, 0):
                self.caught_up_at[task] = elapsed_s

    @property
    def moved(self) -> list[str]:
        return sorted(self.owned_at)

    def done(self) -> bool:
        return all(t in self.live or t in self.caught_up_at for t in self.before)

    def pending(self) -> list[str]:
        return sorted(t for t in self.before if t not in self.live and t not in self.caught_up_at)

    def summary(self) -> dict[str, Any]:
        last = {t: st.get("position", 0) for t, st in self.before.items()}
        reread = reread_records(last, self.restored_position)
        return {
            # None: some moved task was not owned again / not caught up (yet)
            "recovery_s": (max((self.caught_up_at[t] for t in self.moved), default=0.0)
                           if self.done() else None),
            "takeover_s": (max(self.owned_at.values(), default=0.0)
                           if all(t in self.live or t in self.owned_at for t in self.before) else None),
            "reread_records": sum(reread.values()),
            "reread_by_stage": {s: sum(v for t, v in reread.items() if t.startswith(s + "-"))
                                for s in STAGES},
            "moved_tasks": self.moved,
            "tasks": {t: {"last_position": last.get(t, 0), "restored_position": self.restored_position[t],
                          "end_at_kill": self.ends.get(t, 0), "owned_s": self.owned_at[t],
                          "caught_up_s": self.caught_up_at.get(t), "reread": reread[t]}
                      for t in self.moved},
        }


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def targets_met(entry: dict[str, Any]) -> dict[str, bool | None]:
    """Which targets one entry meets (throughput is judged per worker, with one worker)."""
    return {
        "events_per_s": (entry["events_per_s"] >= TARGET_EVENTS_PER_S_PER_WORKER
                         if entry["workers"] == 1 else None),
        "freshness_p99_ms": entry["freshness_p99_ms"] <= TARGET_FRESHNESS_P99_MS,
        "freshness_max_ms": entry["freshness_max_ms"] <= TARGET_FRESHNESS_MAX_MS,
        "recovery_s": entry["recovery_s"] is not None and entry["recovery_s"] <= TARGET_RECOVERY_S,
    }


def _scaling_words(ratio: float, ideal: float) -> str:
    if ratio < 0.95:
        return "slower, the extra worker costs more than it adds"
    if ratio < 1.15:
        return "no real gain"
    if ratio < 0.85 * ideal:
        return "some gain, far from linear"
    return "close to linear"


def takeaway(entries: Sequence[dict[str, Any]], *, events: int, rate: float, cores: int) -> str:
    """One sentence per engine, from the numbers only."""
    parts: list[str] = []
    by_engine: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_engine.setdefault(e["engine"], []).append(e)
    for engine, rows in by_engine.items():
        rows = sorted(rows, key=lambda r: r["workers"])
        lo = rows[0]
        s = (f"{engine} with {lo['workers']} worker{'s' if lo['workers'] > 1 else ''} catches up at "
             f"{lo['events_per_s']:,.0f} events/s")
        if lo["workers"] == 1:
            s += (f" (target >= {TARGET_EVENTS_PER_S_PER_WORKER:,.0f}: "
                  f"{_met(lo['events_per_s'] >= TARGET_EVENTS_PER_S_PER_WORKER)})")
        if (alone := lo.get("client_alone_events_per_s")) is not None:
            s += (f"; its Kafka client alone, with no work per record, reads {alone:,.0f} events/s here "
                  f"({lo['client_alone_cpu_s_per_million']:,.0f} CPU s per 1M)")
            if alone < TARGET_EVENTS_PER_S_PER_WORKER:
                s += ", below the target: no worker of this engine can reach it on this machine"
            else:
                s += f", and a worker reaches {lo['events_per_s_per_worker'] / alone:.0%} of that"
        if len(rows) > 1:
            hi = rows[-1]
            ratio = hi["events_per_s"] / lo["events_per_s"]
            s += (f"; {hi['workers']} workers {hi['events_per_s']:,.0f} events/s, {ratio:.2f}x "
                  f"({_scaling_words(ratio, hi['workers'] / lo['workers'])}; the broker, the producer and "
                  f"the workers share this machine's {cores} cores)")
        p99 = max(r["freshness_p99_ms"] for r in rows)
        mx = max(r["freshness_max_ms"] for r in rows)
        rec = max(rows, key=lambda r: math.inf if r["recovery_s"] is None else r["recovery_s"])
        if rec["recovery_s"] is None:
            failed = rec["repeats"] - rec["recovered_runs"]
            recovered = (f"were not back (owned, caught up and processing) within "
                         f"{rec['recovery_timeout_s']:.0f} s in {failed} of {rec['repeats']} run"
                         f"{'s' if rec['repeats'] > 1 else ''} with {rec['workers']} worker"
                         f"{'s' if rec['workers'] > 1 else ''} (target {TARGET_RECOVERY_S:.0f} s: missed)")
        else:
            recovered = (f"were caught up within {rec['recovery_s']:.1f} s (target "
                         f"{TARGET_RECOVERY_S:.0f} s: {_met(rec['recovery_s'] <= TARGET_RECOVERY_S)})")
        s += (f". At {rate:,.0f} events/s its freshness is p99 <= {p99:,.0f} ms and max <= {mx:,.0f} ms "
              f"(targets {TARGET_FRESHNESS_P99_MS:,.0f}/{TARGET_FRESHNESS_MAX_MS:,.0f} ms: "
              f"{_met(p99 <= TARGET_FRESHNESS_P99_MS)}/{_met(mx <= TARGET_FRESHNESS_MAX_MS)}); after a "
              f"SIGKILL the moved tasks {recovered}, re-reading "
              f"{max(r['reread_records'] for r in rows):,} records at most, where replaying the whole "
              f"{events:,}-event topic took that group ({rec['workers']} worker"
              f"{'s' if rec['workers'] > 1 else ''}) {rec['full_replay_s']:.1f} s.")
        unrecovered = [r for r in rows if r["recovery_s"] is not None and r["recovered_runs"] < r["repeats"]]
        if unrecovered:
            note = "; ".join(
                f"with {r['workers']} worker{'s' if r['workers'] > 1 else ''}, "
                f"{r['repeats'] - r['recovered_runs']} of {r['repeats']} runs did not recover within "
                f"{r['recovery_timeout_s']:.0f} s"
                for r in unrecovered)
            s += f" {note[0].upper()}{note[1:]} (the median counts them as the longest)."
        parts.append(s)
    if len(by_engine) == 2:
        a, b = (min(rows, key=lambda r: r["workers"]) for rows in by_engine.values())
        if a["workers"] == b["workers"]:
            fast, slow = (a, b) if a["events_per_s"] >= b["events_per_s"] else (b, a)
            parts.append(f"With {a['workers']} worker{'s' if a['workers'] > 1 else ''}, {fast['engine']} "
                         f"sustains {fast['events_per_s'] / slow['events_per_s']:.2f}x the events/s of "
                         f"{slow['engine']}.")
    return " ".join(parts)


# -- producing ---------------------------------------------------------------------------------

def event_records(events: int, seed: int, start_ms: int = DEFAULT_START_MS, first_id: int = 0
                  ) -> list[tuple[bytes, bytes]]:
    """``events`` generated events as ``(key, value)`` wire records, keyed by user, event ids from
    ``first_id`` and event times from ``start_ms`` (so they can follow events a group has seen)."""
    table = generate_table(GeneratorConfig(events=events, seed=seed, rate=2.0, start_ms=start_ms))
    out: list[tuple[bytes, bytes]] = []
    for batch in table.to_batches(max_chunksize=50_000):
        for e in batch.to_pylist():
            e["event_id"] += first_id
            out.append((str(e["user_id"]).encode(), encode_event(e)))
    return out


@dataclass
class PacedResult:
    sent: int = 0
    elapsed_s: float = 0.0

    @property
    def achieved_events_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0


def paced_produce(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]], rate: float,
                  stop: threading.Event | None = None, result: PacedResult | None = None) -> PacedResult:
    """Send ``records`` at ``rate`` records/s (1 ms ticks) until done or ``stop`` is set.

    The producer is connected (metadata fetched) before the clock starts, so the first events
    do not wait for it. ``result`` is filled as it goes (for a caller in another thread).
    """
    out = result if result is not None else PacedResult()
    producer = make_producer(settings.bootstrap_servers, linger_ms=1)
    try:
        producer.partitions_for(topic)
        start = time.perf_counter()
        for i, (k, v) in enumerate(records):
            if stop is not None and stop.is_set():
                break
            delay = start + i / rate - time.perf_counter()
            if delay > 0.001:
                time.sleep(delay)
            producer.send(topic, key=k, value=v)
            out.sent = i + 1
        producer.flush()
        out.elapsed_s = time.perf_counter() - start
    finally:
        producer.close()
    return out


class PacedProducer:
    """:func:`paced_produce` in a background thread; :meth:`stop` ends it and returns the result."""

    def __init__(self, settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]],
                 rate: float) -> None:
        self.result = PacedResult()
        self._stop = threading.Event()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                paced_produce(settings, topic, records, rate, self._stop, self.result)
            except BaseException as err:  # re-raised in stop()
                self._error = err

        self._thread = threading.Thread(target=run, name="paced-producer", daemon=True)
        self._thread.start()

    def stop(self) -> PacedResult:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._error is not None:
            raise StreamBenchError(f"the paced producer failed: {self._error!r}") from self._error
        return self.result


# -- one throwaway application -----------------------------------------------------------------

class StreamRun:
    """A fresh input topic, an application id and its worker group; on exit the workers stop and
    every topic of the run goes (input, features, dead letters, repartition, checkpoints and any
    other the engine made under the application id). Its files are kept only if it failed."""

    def __init__(self, settings: Settings, root: Path, engine: str, record_freshness: bool = False,
                 prefix: str = "bench-st") -> None:
        self.settings, self.bootstrap = settings, settings.bootstrap_servers
        self.app_id = self.topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.out, self.dlq = f"{self.topic}.features", f"{self.topic}.dlq"
        self.repartition = self.app_id + REPARTITION_SUFFIX
        self.dir = root / self.app_id
        self.keep_files = False  # set when a measurement failed: its logs stay for a look
        kafka_admin.ensure_topics(self.bootstrap, [
            kafka_admin.TopicSpec(self.topic, settings.partitions),
            kafka_admin.TopicSpec(self.out, settings.partitions),
            kafka_admin.TopicSpec(self.dlq, 1)])
        self.group = WorkerGroup(settings, self.topic, self.out, self.dlq, self.dir / "online.sqlite",
                                 self.app_id, engine=engine, record_freshness=record_freshness)

    def produce(self, records: Iterable[tuple[bytes, bytes]],
                on_progress: Callable[[int], None] | None = None) -> ProduceStats:
        producer = make_producer(self.bootstrap)
        try:
            stats = produce(producer, self.topic, records, on_progress=on_progress)
        finally:
            producer.close()
        if stats.failed:
            raise StreamBenchError(f"{stats.failed} of {stats.sent} records were not delivered to "
                                   f"{self.topic}: {stats.errors}")
        return stats

    def reader(self) -> OnlineStoreReader:
        return OnlineStoreReader(self.group.store)

    def __enter__(self) -> StreamRun:
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        self.close(keep_files=exc_type is not None)

    def close(self, keep_files: bool = False) -> None:
        try:
            self.group.stop()
        finally:
            mine = {self.topic, self.out, self.dlq, *internal_topics(self.app_id)}
            existing = set(kafka_admin.list_topics(self.bootstrap))
            mine |= {t for t in existing if t.startswith(self.app_id)}
            gone = sorted(mine & existing)
            if gone:
                kafka_admin.delete_topics(self.bootstrap, gone)
            kafka_admin.delete_groups(self.bootstrap, [self.app_id])
            if not (keep_files or self.keep_files):
                shutil.rmtree(self.dir, ignore_errors=True)


class _EndOffsets:
    """End offsets of a few topics through one open consumer (one round trip per call)."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.tps = [TopicPartition(t, p) for t in topics
                    for p in sorted(self.consumer.partitions_for_topic(t) or ())]

    def __call__(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): off for tp, off in self.consumer.end_offsets(self.tps).items()}

    def close(self) -> None:
        self.consumer.close()


# -- the measurements --------------------------------------------------------------------------

@dataclass
class _UI:
    console: Console
    bar: Progress
    overall: TaskID
    phase: TaskID

    def start_phase(self, description: str, total: float | None) -> None:
        self.bar.reset(self.phase, total=total, description=description, completed=0)

    def update(self, completed: float) -> None:
        self.bar.update(self.phase, completed=completed)


def _seconds(value: float | None, timeout_s: float) -> str:
    return f"not within {timeout_s:.0f} s" if value is None else f"{value:.2f} s"


def _loadavg() -> Load:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _catch_up(run: StreamRun, records: Sequence[tuple[bytes, bytes]], workers: int, ui: _UI,
              label: str, profile: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Pre-fill, start the group, time it from every task owned to everything through both stages.

    Returns the figures and, with ``profile``, where the workers' time went meanwhile (py-spy)."""
    n = len(records)
    ui.start_phase(f"{label}: pre-filling {n:,} events", n)
    done = 0

    def advance(k: int) -> None:
        nonlocal done
        done += k
        ui.update(done)

    run.produce(records, on_progress=advance)
    ui.start_phase(f"{label}: starting {workers} worker{'s' if workers > 1 else ''}", None)
    run.group.start(workers, timeout_s=120)
    profiler = None
    if profile:
        pids = [w.proc.pid for w in run.group.workers if w.proc is not None]
        profiler = Profiler(pids, run.dir / "profile")
        profiler.start()
    st0 = run.group.stats()
    cpu0, t0 = run.group.cpu_seconds(), time.perf_counter()
    ui.start_phase(f"{label}: catching up on {n:,} events", n)
    try:
        run.group.wait_drained(n, timeout_s=max(120.0, n / 500), on_stats=_ProgressWatch(ui, n, label, run))
    finally:
        wall, cpu = time.perf_counter() - t0, run.group.cpu_seconds() - cpu0
        where = profiler.stop() if profiler is not None else None
    before = min(st0.get("processed", 0), n - 1)  # processed while the group was still forming
    timed = n - before
    return {"events": n, "processed_before_clock": before, "wall_s": wall, "events_per_s": timed / wall,
            "cpu_s": cpu, "cpu_s_per_million": cpu / timed * 1_000_000,
            "full_replay_s": n / (timed / wall)}, where


def owned_tasks(group: WorkerGroup, reader: OnlineStoreReader) -> dict[int, int]:
    """Tasks each live worker process owns now, by its index in the group, read from its own row
    (a row left by an earlier process under the same id, another PID, does not count)."""
    rows = reader.worker_stats()
    out: dict[int, int] = {}
    for i, w in enumerate(group.workers):
        row = rows.get(w.worker_id)
        if not w.alive or w.proc is None or row is None or row.get("pid", w.proc.pid) != w.proc.pid:
            continue
        out[i] = row.get("assigned_partitions", 0)
    return out


def pick_victim(owned: dict[int, int]) -> int:
    """Worker 0, unless it owns no task right now: then the first worker that does."""
    if owned.get(0, 0) > 0:
        return 0
    return next((i for i in sorted(owned) if owned[i] > 0), 0)


def balanced(owned: dict[int, int], workers: int, tasks: int) -> bool:
    """All ``workers`` are up, each owns at least one task and every task is owned."""
    return len(owned) == workers and sum(owned.values()) == tasks and all(n > 0 for n in owned.values())


class _ProgressWatch:
    """``on_stats`` for a long wait: moves the bar, and gives up when the counters stand still
    for ``stall_s`` (a stuck group fails in minutes, not at the end of a generous timeout)."""

    def __init__(self, ui: _UI, total: int, label: str, run: StreamRun, stall_s: float = 180.0) -> None:
        self.ui, self.total, self.label, self.run, self.stall_s = ui, total, label, run, stall_s
        self.last: tuple[int, int] = (-1, -1)
        self.since = time.monotonic()

    def __call__(self, st: dict[str, int]) -> None:
        self.ui.update(min(st.get("merchant_processed", 0), self.total))
        now = (st.get("consumed", 0) + st.get("merchant_consumed", 0),
               st.get("processed", 0) + st.get("merchant_processed", 0))
        if now != self.last:
            self.last, self.since = now, time.monotonic()
        elif time.monotonic() - self.since > self.stall_s:
            self.run.keep_files = True
            raise StreamBenchError(
                f"{self.label}: no progress for {self.stall_s:.0f}s (counters {st}); the workers' logs "
                f"are in {self.run.dir}")


def _task_input(run: StreamRun, task: str) -> tuple[str, int]:
    stage, p = task.rsplit("-", 1)
    return (run.topic if stage == "user" else run.repartition), int(p)


def _recovery(run: StreamRun, cfg: StreamBenchConfig, workers: int, first_id: int, ui: _UI,
              label: str) -> dict[str, Any]:
    """On the caught-up group: paced producing, SIGKILL worker 0 (or, if it owns no task at that
    moment, the first worker that does), follow the moved tasks until they are caught up."""
    group = run.group
    frontier = max(group.stats().get("frontier_ts", 0), DEFAULT_START_MS)
    budget_s = cfg.kill_after_s + cfg.recovery_timeout_s
    records = event_records(int(cfg.rate * budget_s), seed=23, start_ms=frontier + 1_000, first_id=first_id)
    ends = _EndOffsets(run.bootstrap, [run.topic, run.repartition])
    reader = run.reader()
    try:
        # A worker that lost its tasks (its session timed out under load) owns nothing to kill
        # for: give the group a moment to share the tasks out first.
        tasks = 2 * run.settings.partitions
        ui.start_phase(f"{label}: waiting for {workers} worker{'s' if workers > 1 else ''} to share "
                       f"{tasks} tasks", None)
        wait_until = time.monotonic() + 30
        while not (shared := balanced(owned_tasks(group, reader), workers, tasks)):
            if time.monotonic() > wait_until:
                break
            time.sleep(0.2)
        ui.start_phase(f"{label}: {cfg.rate:,.0f} events/s, SIGKILL of a worker in "
                       f"{cfg.kill_after_s:.0f}s", None)
        producer = PacedProducer(run.settings, run.topic, records, cfg.rate)
        try:
            time.sleep(cfg.kill_after_s)
            for w in group.workers:
                w.check_alive()
            owned = owned_tasks(group, reader)
            index = pick_victim(owned)
            victim = group.workers[index]
            t_kill = time.perf_counter()
            victim.kill()
            before = reader.task_stats()  # the dead worker's last reports of its tasks
            at_kill = ends()
            if workers == 1:  # restart it under its static id: it gets its tasks back at once
                replacement = group.new_worker(index)
                replacement.launch()
                group.workers[index] = replacement
            tracker = RecoveryTracker(before, {t: at_kill.get(_task_input(run, t), 0) for t in before})
            ui.start_phase(f"{label}: tasks taken over and caught up", len(before))
            deadline = t_kill + cfg.recovery_timeout_s
            while True:
                now = time.perf_counter()
                tracker.observe(now - t_kill, reader.task_stats())
                ui.update(len(tracker.live) + len(tracker.caught_up_at))
                if tracker.done() or now > deadline:
                    break
                for w in group.workers:
                    if w is not victim:
                        w.check_alive()
                time.sleep(_POLL_S)
        finally:
            sent = producer.stop()
        failure = None
        if tracker.done():
            # Back by the task counters; it must also settle and process what came meanwhile (a
            # group whose members keep losing their session restores its tasks over and over).
            total = cfg.events + sent.sent
            ui.start_phase(f"{label}: draining the {sent.sent:,} events produced meanwhile", total)
            try:
                group.wait_drained(total, timeout_s=max(cfg.recovery_timeout_s, sent.sent / 500),
                                   on_stats=_ProgressWatch(ui, total, label, run, stall_s=60.0))
            except (StreamBenchError, StreamWorkerError) as err:
                failure = (f"its tasks were owned and caught up {tracker.summary()['recovery_s']:.1f}s after "
                           f"the SIGKILL, but the group then did not process the {sent.sent:,} events "
                           f"produced meanwhile: {err}")
        else:
            failure = (f"tasks {tracker.pending()} were not owned and caught up within "
                       f"{cfg.recovery_timeout_s:.0f}s of the SIGKILL")
        if failure:  # a figure too: it did not recover (the run's logs are kept)
            ui.console.print(f"  [red]{label}: {textwrap.shorten(failure, 300)}[/red]; logs in {run.dir}")
            run.keep_files = True
    finally:
        reader.close()
        ends.close()
    figures = tracker.summary()
    if failure:
        figures["caught_up_by_counters_s"], figures["recovery_s"] = figures["recovery_s"], None
    return {**figures, "recovered": failure is None, "failure": failure, "killed_worker": victim.worker_id,
            "killed_worker_tasks": owned.get(index, 0),
            "tasks_by_worker_at_kill": {group.workers[i].worker_id: n for i, n in owned.items()},
            "shared_before_kill": shared, "survivors": len(group.alive()),
            "produced": sent.sent, "achieved_events_per_s": sent.achieved_events_per_s,
            "live_tasks": sorted(tracker.live), "pending_tasks": tracker.pending()}


def _freshness(settings: Settings, root: Path, cfg: StreamBenchConfig, engine: str, workers: int,
               ui: _UI, label: str) -> dict[str, Any]:
    """A running, caught-up group on a fresh topic; paced events; freshness per event."""
    warm = max(int(cfg.rate), 100)  # one second's worth, unpaced, drained before the clock
    n = cfg.freshness_events
    records = event_records(warm + n, seed=11)
    with StreamRun(settings, root, engine, record_freshness=True) as run:
        ui.start_phase(f"{label}: starting {workers} worker{'s' if workers > 1 else ''}", None)
        run.group.start(workers, timeout_s=120)
        run.produce(records[:warm])
        run.group.wait_drained(warm, timeout_s=120)
        ui.start_phase(f"{label}: {n:,} events at {cfg.rate:,.0f} events/s", n)
        producer = PacedProducer(settings, run.topic, records[warm:], cfg.rate)
        deadline = time.monotonic() + n / cfg.rate + 120
        while producer.result.sent < n and time.monotonic() < deadline:
            ui.update(producer.result.sent)
            for w in run.group.workers:
                w.check_alive()
            time.sleep(0.2)
        sent = producer.stop()
        ui.update(sent.sent)
        run.group.wait_drained(warm + n, timeout_s=120)
        reader = run.reader()
        try:
            fresh = event_freshness(reader.freshness(), min_event_id=warm)
        finally:
            reader.close()
    return {"offered_events_per_s": cfg.rate, "achieved_events_per_s": sent.achieved_events_per_s,
            "events": n, "incomplete": fresh.incomplete, **latency_summary(fresh.values_ms),
            "by_stage": {s: latency_summary(v) for s, v in fresh.by_stage_ms.items()}}


def kafka_hop(settings: Settings, cfg: StreamBenchConfig, ui: _UI) -> dict[str, Any]:
    """The floor under freshness: one Kafka hop at the same offered rate, no stream engine.

    The same paced producer writes to a fresh topic and a plain kafka-python consumer with
    the workers' fetch settings reads it, in a process of its own as the workers are
    (:mod:`.hop_consumer`): receive time minus CreateTime, per record. An event's values are
    visible only after two such hops (the input, then the repartition topic).
    """
    topic = f"bench-st-hop-{uuid.uuid4().hex[:8]}"
    n = cfg.freshness_events
    records = event_records(n, seed=11)
    kafka_admin.ensure_topics(settings.bootstrap_servers, [kafka_admin.TopicSpec(topic, settings.partitions)])
    timeout_s = n / cfg.rate + 60
    consumer = subprocess.Popen(
        [sys.executable, "-m", "dataflow_playground.app.bench.hop_consumer", "--bootstrap",
         settings.bootstrap_servers, "--topic", topic, "--records", str(n), "--timeout-s", str(timeout_s)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=child_env(settings),
        preexec_fn=die_with_parent())
    try:
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != b"ready":
            raise StreamBenchError(f"the hop consumer did not start (exit code {consumer.wait()})")
        ui.start_phase(f"one Kafka hop: {n:,} events at {cfg.rate:,.0f} events/s", n)
        producer = PacedProducer(settings, topic, records, cfg.rate)
        try:
            while producer.result.sent < n and consumer.poll() is None:
                ui.update(producer.result.sent)
                time.sleep(0.2)
        finally:
            producer.stop()
        out, _ = consumer.communicate(timeout=timeout_s + 10)
        if consumer.returncode != 0:
            raise StreamBenchError(f"the hop consumer failed with exit code {consumer.returncode}")
        latencies: list[float] = orjson.loads(out)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(timeout=10)
        kafka_admin.delete_topics(settings.bootstrap_servers, [topic])
    return {"events": n, "received": len(latencies), **latency_summary(latencies)}


def client_alone(settings: Settings, run: StreamRun, engine: str, events: int, ui: _UI) -> dict[str, Any]:
    """The ceiling under ``engine``'s throughput: its Kafka client alone, reading the first
    ``min(events, CLIENT_ALONE_EVENTS)`` events of the run's pre-filled topic with the workers'
    consumer settings and no work per record, in a process of its own (:mod:`.read_ceiling`),
    in a fresh consumer group that is deleted afterwards.

    A side measurement: if it fails, its figures say why (``{"error": ...}``) and the benchmark
    goes on.
    """
    n = min(events, CLIENT_ALONE_EVENTS)
    group = f"{run.app_id}-client-alone"
    timeout_s = CLIENT_ALONE_START_S + n / CLIENT_ALONE_SLOWEST_EVENTS_PER_S
    ui.start_phase(f"{engine} client alone: reading {n:,} events, no work per record", None)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "dataflow_playground.app.bench.read_ceiling", "--engine", engine,
             "--bootstrap", settings.bootstrap_servers, "--topic", run.topic, "--records", str(n),
             "--app-id", group, "--timeout-s", f"{timeout_s:.0f}"],
            capture_output=True, stdin=subprocess.DEVNULL, env=child_env(settings), timeout=timeout_s + 60,
            preexec_fn=die_with_parent())
    except subprocess.TimeoutExpired:
        return {"error": f"the reader did not stop within {timeout_s + 60:.0f} s"}
    finally:
        kafka_admin.delete_groups(settings.bootstrap_servers, [group])
    if out.returncode != 0:
        return {"error": f"the reader failed with exit code {out.returncode}: "
                         f"{out.stderr.decode(errors='replace').strip()[-600:]}"}
    figures: dict[str, Any] = orjson.loads(out.stdout.splitlines()[-1])
    if figures["records"] < n:
        return {"error": f"the reader got {figures['records']:,} of {n:,} events within {timeout_s:.0f} s"}
    return figures


def _measure(settings: Settings, root: Path, cfg: StreamBenchConfig, engine: str, workers: int,
             records: Sequence[tuple[bytes, bytes]], ui: _UI,
             before_freshness: Callable[[], None] = lambda: None,
             ceiling: Callable[[StreamRun], dict[str, Any] | None] = lambda _run: None) -> dict[str, Any]:
    """One engine x worker count. ``ceiling(run)``: its client alone on the first run's topic,
    once the group has caught up (:func:`client_alone`; ``None`` to skip)."""
    load_before = _loadavg()
    runs = []
    profile = None
    alone = None
    for r in range(cfg.repeats):
        label = f"{engine} x{workers} [{r + 1}/{cfg.repeats}]"
        with StreamRun(settings, root, engine) as run:
            catch, where = _catch_up(run, records, workers, ui, label, profile=cfg.profile and r == 0)
            profile = profile or where
            if r == 0:
                alone = ceiling(run)
            rec = _recovery(run, cfg, workers, first_id=len(records), ui=ui, label=label)
        runs.append({"catch_up": catch, "recovery": rec})
        ui.console.print(f"  {label}: {catch['events_per_s']:,.0f} events/s, "
                         f"{catch['cpu_s_per_million']:.0f} CPU s per 1M; recovery "
                         f"{_seconds(rec['recovery_s'], cfg.recovery_timeout_s)} "
                         f"({len(rec['moved_tasks'])} tasks moved, {rec['reread_records']:,} records "
                         f"re-read)")
        ui.bar.advance(ui.overall)
    before_freshness()
    fresh = _freshness(settings, root, cfg, engine, workers, ui, f"{engine} x{workers} freshness")
    stages = "; ".join(f"{s} stage alone {f['p50_ms']:.0f}/{f['p99_ms']:.0f}/{f['max_ms']:.0f}"
                       for s, f in fresh["by_stage"].items())
    ui.console.print(f"  {engine} x{workers} freshness at {cfg.rate:,.0f}/s: p50 {fresh['p50_ms']:.1f} ms, "
                     f"p99 {fresh['p99_ms']:.1f} ms, max {fresh['max_ms']:.0f} ms ({stages} ms)")
    ui.bar.advance(ui.overall)

    def med(phase: str, key: str) -> float:
        return median([r[phase][key] for r in runs])

    eps = med("catch_up", "events_per_s")
    return {
        "engine": engine, "workers": workers, "events": cfg.events, "repeats": cfg.repeats,
        "events_per_s": eps, "events_per_s_per_worker": eps / workers,
        "cpu_s_per_million": med("catch_up", "cpu_s_per_million"),
        "freshness_p50_ms": fresh["p50_ms"], "freshness_p99_ms": fresh["p99_ms"],
        "freshness_max_ms": fresh["max_ms"],
        "recovery_s": median_or_none([r["recovery"]["recovery_s"] for r in runs]),
        "takeover_s": median_or_none([r["recovery"]["takeover_s"] for r in runs]),
        "recovery_timeout_s": cfg.recovery_timeout_s,
        "recovered_runs": sum(r["recovery"]["recovered"] for r in runs),
        "reread_records": round(med("recovery", "reread_records")),
        "full_replay_s": cfg.events / eps,
        "loadavg_before": load_before, "loadavg_after": _loadavg(),
        # (None: not measured, failed (client_alone_error says why), or all in one delivery)
        "client_alone_events_per_s": (alone or {}).get("events_per_s"),
        "client_alone_cpu_s_per_million": (alone or {}).get("cpu_s_per_million"),
        "client_alone_error": (alone or {}).get("error"),
        "freshness": fresh, "runs": runs,
        "profile": profile,  # of the first run
    }


def _progress(ui: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=ui, transient=False)


def _iter_configs(cfg: StreamBenchConfig) -> Iterator[tuple[str, int]]:
    for engine in cfg.engines:
        for workers in cfg.workers:
            yield engine, workers


def run_bench(settings: Settings, cfg: StreamBenchConfig, ui: Console) -> dict[str, Any]:
    """Measure every engine x worker count; write ``results/stream.*``; return the summary."""
    started = stack.up(settings, components=[stack.KAFKA], on_event=lambda m: ui.print(f"  {m}"))
    root = settings.data_dir / "bench-stream"
    load_before = _loadavg()
    entries: list[dict[str, Any]] = []
    warmups: dict[str, float] = {}
    hop: dict[str, Any] | None = None
    try:
        with ui.status(f"generating {cfg.events:,} events"):
            records = event_records(cfg.events, seed=7)
        with _progress(ui) as bar:
            overall = bar.add_task("engine x workers runs", total=len(cfg.engines) * len(cfg.workers)
                                   * (cfg.repeats + 1))
            phase = bar.add_task("", total=None)
            view = _UI(ui, bar, overall, phase)

            def measure_hop() -> None:
                """Once, before the first freshness phase: on a broker that has worked a while, as
                it has for every freshness phase (just after its start the hop's p99 was 27-29 ms,
                about three times the 8-11 ms measured there later)."""
                nonlocal hop
                if hop is None:
                    hop = kafka_hop(settings, cfg, view)
                    ui.print(f"  one Kafka hop at {cfg.rate:,.0f}/s (no engine): p50 {hop['p50_ms']:.1f} ms, "
                             f"p99 {hop['p99_ms']:.1f} ms, max {hop['max_ms']:.0f} ms")

            alone: dict[str, dict[str, Any]] = {}

            def ceiling(run: StreamRun) -> dict[str, Any]:
                """Once per engine, after its first catch-up (the broker warm, the topic filled)."""
                if run.group.engine not in alone:
                    figures = alone[run.group.engine] = client_alone(settings, run, run.group.engine,
                                                                     cfg.events, view)
                    ui.print(f"  {run.group.engine} client alone (no work per record): "
                             + (f"not measured, {figures['error']}" if "error" in figures
                                else f"events/s (CPU s per 1M) "
                                f"{_rate_and_cpu(figures['events_per_s'], figures['cpu_s_per_million'])}"))
                return alone[run.group.engine]

            warmed: set[str] = set()
            for engine, workers in _iter_configs(cfg):
                if cfg.warmup_events and engine not in warmed:
                    n = min(cfg.warmup_events, cfg.events)
                    with StreamRun(settings, root, engine, prefix="bench-st-warmup") as run:
                        warmups[engine] = _catch_up(run, records[:n], 1, view,
                                                    f"{engine} warm-up (untimed)")[0]["events_per_s"]
                    warmed.add(engine)
                entries.append(_measure(settings, root, cfg, engine, workers, records, view, measure_hop,
                                        ceiling))
    finally:
        if started.get("kafka"):
            stack.stop(stack.KAFKA, settings)
    load = {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": _loadavg()}
    return write_stream_results(settings, cfg, entries, load, warmups, hop)


def _profiled(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if (e.get("profile") or {}).get("parts")]


def _asleep(profile: dict[str, Any]) -> str:
    """Samples of threads asleep, or "-" for a profile that does not count them (Profiler.stop
    always does; a profile built elsewhere, as in the tests, may not)."""
    n = profile.get("waiting_samples")
    return "-" if n is None else f"{n:,}"


def profile_table(entries: Sequence[dict[str, Any]]) -> str:
    """Markdown: each part's share of the workers' busy samples, per engine x workers ("" if none)."""
    profiled = _profiled(entries)
    failed = [e for e in entries if (e.get("profile") or {}).get("error")]
    out = ""
    if profiled:
        parts = [p for p, _frags in PARTS] + [REST]
        out += ("\n\nWhere the workers' busy time goes while they catch up (py-spy, "
                f"{PROFILE_RATE_HZ} samples/s on every worker of the first run"
                f"{SAMPLING_NOTE}, each sample in the first part one of its frames names, in this order; "
                "samples of threads asleep, waiting for I/O, a lock or the GIL, left out):\n\n")
        out += markdown_table(
            ["part", *(f"{e['engine']} x{e['workers']}" for e in profiled)],
            [[p, *(f"{e['profile']['parts'][p] * 100:.0f} %" if p in e["profile"]["parts"] else "-"
                   for e in profiled)] for p in parts if any(p in e["profile"]["parts"] for e in profiled)]
            + [["busy samples", *(f"{e['profile']['samples']:,}" for e in profiled)],
               ["samples asleep, left out", *(_asleep(e["profile"]) for e in profiled)]])
    for e in failed:
        out += f"\n\nNo profile of {e['engine']} x{e['workers']}: {e['profile']['error']}."
    return out


def profile_takeaway(entries: Sequence[dict[str, Any]]) -> str:
    """A sentence per engine that missed the throughput target: its three largest parts."""
    out = ""
    for e in _profiled(entries):
        if e["workers"] != min(x["workers"] for x in entries if x["engine"] == e["engine"]):
            continue
        if e["events_per_s_per_worker"] >= TARGET_EVENTS_PER_S_PER_WORKER:
            continue
        top = list(e["profile"]["parts"].items())[:3]
        parts = ", ".join(f"{p} {v * 100:.0f} %" for p, v in top)
        out += (f" Where {e['engine']}'s time goes (py-spy, {e['workers']} worker"
                f"{'s' if e['workers'] > 1 else ''}): {parts}.")
    return out


def _targets() -> dict[str, float]:
    return {"events_per_s_per_worker_1_worker": TARGET_EVENTS_PER_S_PER_WORKER,
            "freshness_p99_ms": TARGET_FRESHNESS_P99_MS, "freshness_max_ms": TARGET_FRESHNESS_MAX_MS,
            "recovery_s": TARGET_RECOVERY_S}


def write_stream_results(settings: Settings, cfg: StreamBenchConfig, entries: list[dict[str, Any]],
                         load: dict[str, Any], warmups: dict[str, float],
                         hop: dict[str, Any] | None = None) -> dict[str, Any]:
    """``results/stream.{json,md,png}`` from measured entries; the summary ``--json`` prints.

    ``hop``: :func:`kafka_hop`'s figures (the freshness floor), if measured."""
    cores = os.cpu_count() or 1
    for e in entries:
        e["targets_met"] = targets_met(e)
    text = takeaway(entries, events=cfg.events, rate=cfg.rate, cores=cores)
    if hop is not None:
        text += (f" One Kafka hop alone (the same paced producer, a plain kafka-python consumer) took "
                 f"p50 {hop['p50_ms']:,.0f} / p99 {hop['p99_ms']:,.0f} / max {hop['max_ms']:,.0f} ms in this "
                 f"run; an event's values need two hops (input, repartition topic), so freshness cannot "
                 f"be below about twice that here.")
    table = markdown_table(
        ["engine", "workers", "events/s", "events/s per worker", "CPU s per 1M events",
         "client alone: events/s (CPU s per 1M)",
         f"freshness p50 / p99 / max ms at {cfg.rate:,.0f}/s", "recovery s (takeover s)", "runs recovered",
         "records re-read", "full replay s", "replay / recovery"],
        [[e["engine"], e["workers"], e["events_per_s"], e["events_per_s_per_worker"],
          f"{e['cpu_s_per_million']:,.0f}",
          _rate_and_cpu(e.get("client_alone_events_per_s"), e.get("client_alone_cpu_s_per_million")),
          f"{e['freshness_p50_ms']:,.0f} / {e['freshness_p99_ms']:,.0f} / {e['freshness_max_ms']:,.0f}",
          f"{_seconds(e['recovery_s'], e['recovery_timeout_s'])} "
          f"({_seconds(e['takeover_s'], e['recovery_timeout_s'])})",
          f"{e['recovered_runs']}/{e['repeats']}", e["reread_records"], f"{e['full_replay_s']:,.1f}",
          f"{e['full_replay_s'] / e['recovery_s']:,.1f}x" if e["recovery_s"] else "-"]
         for e in entries])
    table += "\n\n" + markdown_table(
        ["engine", "workers", f"events/s >= {TARGET_EVENTS_PER_S_PER_WORKER:,.0f} (1 worker)",
         f"p99 <= {TARGET_FRESHNESS_P99_MS:.0f} ms", f"max <= {TARGET_FRESHNESS_MAX_MS:.0f} ms",
         f"recovery <= {TARGET_RECOVERY_S:.0f} s", "load avg 1/5/15 before -> after"],
        [[e["engine"], e["workers"], *(_met(v) for v in e["targets_met"].values()),
          f"{e['loadavg_before']} -> {e['loadavg_after']}"] for e in entries])
    text += profile_takeaway(entries)
    table += profile_table(entries)
    for engine, error in {e["engine"]: e.get("client_alone_error") for e in entries}.items():
        if error:
            table += f"\n\nNo client-alone figure for {engine}: {error}."
    table += (f"\n\nThroughput: median of {cfg.repeats} catch-up runs on {cfg.events:,} pre-filled events "
              f"(after an untimed warm-up of {min(cfg.warmup_events, cfg.events):,} events per engine); "
              f"client alone: the engine's Kafka consumer with the workers' settings and no work per "
              f"record, in a process of its own, reading the first {min(cfg.events, CLIENT_ALONE_EVENTS):,} "
              f"of those events once per engine after its first catch-up (the rate after the first "
              f"delivery); "
              f"recovery: median of the same runs (SIGKILL of worker 0, or of the first worker owning a task "
              f"if it owns none, after {cfg.kill_after_s:.0f} s at "
              f"{cfg.rate:,.0f} events/s; one worker is restarted under its static id, more share its "
              f"tasks); freshness: {cfg.freshness_events:,} events paced at {cfg.rate:,.0f}/s, produced -> "
              f"visible in both stages. Records re-read count input records of both stages (a "
              f"repartition record holds many events). Operators (features/stream/state.py): "
              f"{OPERATORS_BUILD}. {cores} cores; load average (1/5/15 min) before "
              f"{load['loadavg_1_5_15_before']}, after {load['loadavg_1_5_15_after']}.")
    parameters = {"events": cfg.events, "workers": list(cfg.workers), "engines": list(cfg.engines),
                  "repeats": cfg.repeats, "rate": cfg.rate, "freshness_seconds": cfg.freshness_seconds,
                  "freshness_events": cfg.freshness_events, "kill_after_s": cfg.kill_after_s,
                  "warmup_events": cfg.warmup_events, "partitions": cfg.partitions,
                  "tasks": 2 * cfg.partitions, "kafka_version": settings.kafka_version,
                  "operators_build": OPERATORS_BUILD}
    summary: dict[str, Any] = {"parameters": parameters, "targets": _targets(), "entries": entries,
                               "load": load, "warmup_events_per_s": warmups, "kafka_hop": hop,
                               "takeaway": text}

    def chart() -> Figure:
        return _chart(entries, cfg, text)

    paths = write_results("stream", settings.results_dir,
                          title="Stream engines: throughput, freshness and recovery by worker count",
                          parameters=parameters,
                          data={k: v for k, v in summary.items() if k not in ("parameters", "takeaway")},
                          table_md=table, takeaway=text, chart=chart)
    summary["results"] = {k: str(v) for k, v in paths.items()}
    return summary


def _rate_and_cpu(events_per_s: float | None, cpu_s_per_million: float | None) -> str:
    """A client alone's ``events/s (CPU s per 1M)``; "-" if not measured, or read in one
    delivery (no rate)."""
    return "-" if events_per_s is None else f"{events_per_s:,.0f} ({cpu_s_per_million:,.0f})"


def summary_table(summary: dict[str, Any]) -> Table:
    """The figures for the terminal (the Markdown file has them all)."""
    rate = summary["parameters"]["rate"]
    t = Table(title=f"stream engines, {summary['parameters']['events']:,} events, "
                    f"median of {summary['parameters']['repeats']}")
    for col in ("engine", "workers", "events/s", "CPU s/1M", "client alone ev/s (CPU s/1M)",
                f"fresh p50/p99/max ms @{rate:,.0f}/s", "recovery s", "re-read", "replay s"):
        t.add_column(col, justify="left" if col == "engine" else "right", overflow="fold")
    for e in summary["entries"]:
        t.add_row(e["engine"], str(e["workers"]), f"{e['events_per_s']:,.0f}",
                  f"{e['cpu_s_per_million']:.0f}",
                  _rate_and_cpu(e.get("client_alone_events_per_s"), e.get("client_alone_cpu_s_per_million")),
                  f"{e['freshness_p50_ms']:.0f}/{e['freshness_p99_ms']:.0f}/{e['freshness_max_ms']:.0f}",
                  _seconds(e["recovery_s"], e["recovery_timeout_s"]), f"{e['reread_records']:,}",
                  f"{e['full_replay_s']:.1f}")
    return t


def _log_axis(ax: Any, values: Sequence[float], *lines: float) -> None:
    """Log scale with plain numbers, from the decade below the smallest value to room above."""
    every = [v for v in (*values, *lines) if v > 0]
    ax.set_yscale("log")
    ax.set_ylim(10 ** np.floor(np.log10(min(every))), max(every) * 6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _chart(entries: Sequence[dict[str, Any]], cfg: StreamBenchConfig, text: str) -> Figure:
    colors = {"faust": "#dd8452", "kafka-python": "#55a868"}
    fig = Figure(figsize=(15, 5.8))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    labels = [f"{e['engine']}\n{e['workers']} worker{'s' if e['workers'] > 1 else ''}" for e in entries]
    xs = np.arange(len(entries))
    cols = [colors.get(e["engine"], "grey") for e in entries]

    bars = ax1.bar(xs, [e["events_per_s"] for e in entries], color=cols)
    ax1.bar_label(bars, fmt="{:,.0f}", fontsize=8, label_type="center")
    ax1.axhline(TARGET_EVENTS_PER_S_PER_WORKER, color="grey", ls="--", lw=1,
                label=f"target with 1 worker ({TARGET_EVENTS_PER_S_PER_WORKER:,.0f})")
    # The engine's Kafka client alone (one process): the ceiling over its 1-worker bar.
    alone = [(x, e["client_alone_events_per_s"]) for x, e in zip(xs, entries, strict=True)
             if e["workers"] == 1 and e.get("client_alone_events_per_s") is not None]
    if alone:
        ax1.scatter([x for x, _ in alone], [a for _, a in alone], marker="_", s=900, color="black",
                    linewidths=2, zorder=3, label="its Kafka client alone (no work per record)")
        for x, a in alone:
            ax1.annotate(f"{a:,.0f}", (x, a), xytext=(0, 4), textcoords="offset points", ha="center",
                         fontsize=7)
    ax1.set_ylim(0, max(TARGET_EVENTS_PER_S_PER_WORKER, *(e["events_per_s"] for e in entries),
                        *(a for _, a in alone)) * 1.2)
    ax1.set_xticks(xs, labels, fontsize=8)
    ax1.set_ylabel("events/s, catch-up (median of repeats)")
    ax1.set_title(f"throughput on {cfg.events:,} pre-filled events")
    ax1.legend(fontsize=8, loc="upper right")

    width = 0.27
    keys = ("freshness_p50_ms", "freshness_p99_ms", "freshness_max_ms")
    for j, (key, hatch) in enumerate(zip(keys, ("", "//", "xx"), strict=True)):
        b = ax2.bar(xs + (j - 1) * width, [max(e[key], 0.1) for e in entries], width, color=cols,
                    hatch=hatch, edgecolor="black", lw=0.4,
                    label=key.removeprefix("freshness_").removesuffix("_ms"))
        ax2.bar_label(b, fmt="{:,.0f}", fontsize=6, rotation=90, padding=2)
    ax2.axhline(TARGET_FRESHNESS_P99_MS, color="grey", ls="--", lw=1, label="p99 target")
    ax2.axhline(TARGET_FRESHNESS_MAX_MS, color="grey", ls=":", lw=1, label="max target")
    _log_axis(ax2, [max(e[k], 0.1) for e in entries for k in keys], TARGET_FRESHNESS_P99_MS,
              TARGET_FRESHNESS_MAX_MS)
    ax2.set_xticks(xs, labels, fontsize=8)
    ax2.set_ylabel("produced -> visible in both stages, ms (log)")
    ax2.set_title(f"freshness at {cfg.rate:,.0f} events/s offered")
    ax2.legend(fontsize=7, loc="upper right", ncols=2)

    # A recovery that did not finish is drawn at its timeout, hatched and labelled "> timeout".
    rec = [e["recovery_timeout_s"] if e["recovery_s"] is None else max(e["recovery_s"], 0.01)
           for e in entries]
    replay = [e["full_replay_s"] for e in entries]
    rec_bars = ax3.bar(xs - 0.2, rec, 0.4, color=cols, edgecolor="black", lw=0.4,
                       hatch=["//" if e["recovery_s"] is None else "" for e in entries])
    ax3.bar_label(rec_bars, labels=[f"> {e['recovery_timeout_s']:.0f}" if e["recovery_s"] is None
                                    else f"{e['recovery_s']:.1f}" for e in entries], fontsize=7)
    ax3.bar_label(ax3.bar(xs + 0.2, replay, 0.4, color="lightgrey", edgecolor="black", lw=0.4),
                  fmt="{:.1f}", fontsize=7)
    ax3.axhline(TARGET_RECOVERY_S, color="grey", ls="--", lw=1)
    handles = [Patch(facecolor="white", edgecolor="black", label="recovery after a SIGKILL (engine colour)"),
               Patch(facecolor="lightgrey", edgecolor="black", label="full replay of the topic"),
               Line2D([], [], color="grey", ls="--", lw=1, label="recovery target")]
    if any(e["recovery_s"] is None for e in entries):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                             label=f"not caught up within {entries[0]['recovery_timeout_s']:.0f} s"))
    _log_axis(ax3, [*rec, *replay], TARGET_RECOVERY_S)
    ax3.set_xticks(xs, labels, fontsize=8)
    ax3.set_ylabel("seconds (log)")
    ax3.set_title("recovery vs replaying everything")
    ax3.legend(handles=handles, fontsize=7, loc="upper right")

    fig.suptitle("Stream engines by worker count: throughput, freshness, recovery\n"
                 + "\n".join(textwrap.wrap(text, 200)), fontsize=8.5)
    return fig
