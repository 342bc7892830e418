"""The stream worker SIGKILLed again and again while events arrive.

Each kill loses what the worker computed after its last checkpoint; the restarted worker
(same static member id) restores the checkpoint and reads on from its position. Pass: the
final online state equals DuckDB batch SQL over the same events (0 mismatches,
``features.parity``). Recovery per kill: kill to the restarted worker owning its tasks and
processing again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from dataflow_playground.app.chaos.accounting import Outcome
from dataflow_playground.app.chaos.env import ChaosEnv
from dataflow_playground.app.chaos.load import ProducerLoad
from dataflow_playground.app.chaos.waiting import ChaosError, wait_until
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import FEATURES
from dataflow_playground.features.online_store import OnlineStoreReader
from dataflow_playground.features.parity import compare
from dataflow_playground.features.stream.process import WorkerGroup, drained
from dataflow_playground.producers.generator import GeneratorConfig, generate_table, wire_records

NAME = "worker-kill"
CONDITION = "final online state equals batch SQL (0 mismatches)"


def run(base: Settings, quick: bool, say: Callable[[str], None], seed: int = 13) -> Outcome:
    events, kills, rate = (20_000, 2, 2_000.0) if quick else (1_000_000, 5, 0.0)
    out = Outcome(scenario=NAME, condition=CONDITION)
    cfg = GeneratorConfig(events=events, seed=seed, rate=2.0, malformed_rate=0.001)
    with ChaosEnv(base, NAME) as env:
        s = env.settings
        say("starting Kafka")
        rid = uuid.uuid4().hex[:8]
        app_id = topic = f"chaos-{rid}"
        features_out, dlq = f"{topic}.features", f"{topic}.dlq"
        env.start_kafka([kafka_admin.TopicSpec(topic, s.partitions)])
        group = WorkerGroup(s, topic, features_out, dlq, env.folder / "online.sqlite", app_id,
                            engine=s.stream_engine)
        records = list(wire_records(cfg))
        try:
            say(f"starting a {s.stream_engine} stream worker")
            group.start(1)
            load = ProducerLoad(s.bootstrap_servers, topic, records, rate=rate)
            load.start()
            stalled: ChaosError | None = None
            try:
                for k in range(1, kills + 1):
                    target = events * k // (kills + 1)
                    wait_until(lambda t=target: group.stats().get("consumed", 0) >= t, 900,  # type: ignore[misc]
                               f"the worker reading {target:,} records")
                    t_kill = time.monotonic()
                    group.workers[0].kill()
                    say(f"kill {k}/{kills}: worker SIGKILLed at ~{target:,} records read")
                    group.restart(0, timeout_s=180)
                    before = group.stats().get("processed", 0)
                    wait_until(lambda b=before: group.stats().get("processed", 0) != b
                               or drained(group.stats(), load.progress()[0]), 300,  # type: ignore[misc]
                               "the restarted worker processing again")
                    out.recovery_s.append(round(time.monotonic() - t_kill, 2))
                load.join()
                if load.error:
                    raise load.error
            except ChaosError as err:  # the worker stopped making progress: report what happened
                stalled = err
            finally:
                load.stop()
            if stalled is not None:
                fig = load.figures
                out.sent, out.acknowledged, out.unacknowledged = fig.sent, fig.acknowledged, fig.failed
                out.extra.update({"engine": s.stream_engine, "worker_counters": group.stats(),
                                  "kills_done": len(out.recovery_s)})
                env.keep = True  # the worker's log, for whoever looks into it
                out.notes.append(f"did not finish: {stalled}, after {len(out.recovery_s)} of {kills} "
                                 f"kills; the worker's last counters are in extra.worker_counters, "
                                 f"its log is kept in {env.folder}")
                return out
            say("waiting for the worker to drain the topic")
            stats = group.wait_drained(load.figures.sent, timeout_s=1800)
            group.stop()  # a clean stop flushes what its producers still hold
            reader = OnlineStoreReader(group.store)
            try:
                online = reader.all()
            finally:
                reader.close()
        finally:
            group.stop()
    fig = load.figures
    out.sent, out.acknowledged, out.unacknowledged = fig.sent, fig.acknowledged, fig.failed
    say("batch SQL over the same events")
    table = generate_table(cfg)
    good = fig.acknowledged_ids
    kept = table.filter([e in good for e in table.column("event_id").to_pylist()])
    snapshot = BatchFeatures(kept).snapshot()
    mismatches, missing = {}, 0
    for f in FEATURES:
        rows = ((k, v) for k, v in snapshot.items() if k[0] == f.entity.name)
        p = compare(rows, online, features=(f,))[f.name]
        mismatches[f.name] = p.mismatches
        missing = max(missing, p.missing)
    dead, late = stats.get("dead_lettered", 0), stats.get("late_dropped", 0)
    processed = stats.get("processed", 0)
    # The workers' counters: events taken (re-reads after a restore included), the distinct
    # ones applied to the state, and the re-reads, which the restored checkpoint does not apply twice.
    out.received = processed + dead + late
    out.stored = fig.acknowledged - dead - late
    out.dead_lettered = dead + late
    out.duplicates = out.received - fig.acknowledged
    out.lost = missing
    out.extra.update({"mismatches_by_feature": mismatches, "engine": s.stream_engine,
                      "reread_after_restore": out.duplicates, "worker_counters": stats})
    out.condition_met = sum(mismatches.values()) == 0 and len(out.recovery_s) == kills
    out.notes.append(f"final online state vs batch SQL: {sum(mismatches.values())} mismatches over "
                     f"{len(FEATURES)} features; lost = entities missing from the online state")
    out.notes.append("duplicates = events read again after restoring a checkpoint (not applied twice); "
                     "counted from the workers' own counters in the online store")
    return out
