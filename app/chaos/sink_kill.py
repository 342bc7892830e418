"""The Kafka -> DuckDB sink SIGKILLed again and again while events arrive.

The sink writes a batch to DuckDB, then commits its offsets; a kill between the two
redelivers the batch, and the store inserts none of it twice (``ON CONFLICT`` on the
event id, offsets recorded). Pass: every acknowledged event stored, none twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from dataflow_playground.app.chaos.accounting import Outcome
from dataflow_playground.app.chaos.counters import scrape
from dataflow_playground.app.chaos.env import ChaosEnv, ChaosError, kill_group, stop_process
from dataflow_playground.app.chaos.load import ProducerLoad
from dataflow_playground.app.chaos.waiting import GroupPosition, wait_until
from dataflow_playground.consumers import kafka_to_duckdb
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, wire_records
from dataflow_playground.storage.duckdb_store import EventStore

NAME = "sink-kill"
CONDITION = "0 acknowledged events lost, 0 stored twice in DuckDB"
GROUP = "chaos-sink"


def run(base: Settings, quick: bool, say: Callable[[str], None], seed: int = 7) -> Outcome:
    # The load must outlast the kills: a sink restarted after it has committed everything has
    # no new batch to commit, so its recovery cannot be seen. Quick: 40 s of events for 3 kills
    # of ~10 s each (at 6,000 events/s the load was over by the second kill; a restarted sink then
    # committed all of it at once, and the third one waited for a commit that never came).
    events, kills, rate = (30_000, 3, 750.0) if quick else (1_000_000, 10, 0.0)
    out = Outcome(scenario=NAME, condition=CONDITION)
    with ChaosEnv(base, NAME) as env:
        s = env.settings
        say("starting Kafka")
        env.start_kafka()
        records = list(wire_records(GeneratorConfig(events=events, seed=seed, malformed_rate=0.001)))
        cmd = [sys.executable, "-m", kafka_to_duckdb.__name__, "--group", GROUP, "--idle-timeout", "0",
               "--max-poll-records", "1000", "--write-batch", "5000"]
        sink = env.spawn(cmd, "chaos-sink")
        load = ProducerLoad(s.bootstrap_servers, s.topic, records, rate=rate)
        load.start()
        position = GroupPosition(s.bootstrap_servers, GROUP, s.topic)
        try:
            def kill_point(target: int, k: int) -> int | None:
                """The committed count once it reaches ``target``, if records are left after it."""
                c = position.committed()
                if c < target:
                    return None
                if load.is_alive() or c < position.end():
                    return c
                raise ChaosError(f"the sink had committed all {c:,} records before kill {k}: nothing "
                                 "is left for a restarted sink to commit, so its recovery cannot be "
                                 "seen; the load must outlast the kills (a lower rate or more events)")

            for k in range(1, kills + 1):
                target = events * k // (kills + 1)
                at_kill = wait_until(lambda t=target, k=k: kill_point(t, k),  # type: ignore[misc]
                                     600, f"the sink committing {target:,} records")
                t_kill = time.monotonic()
                kill_group(sink.pid)
                say(f"kill {k}/{kills}: sink SIGKILLed at {at_kill:,} committed records")
                sink = env.spawn(cmd, "chaos-sink")
                wait_until(lambda a=at_kill: position.committed() > a, 300,  # type: ignore[misc]
                           "the restarted sink committing a new batch")
                out.recovery_s.append(round(time.monotonic() - t_kill, 2))
            load.join()
            if load.error:
                raise load.error
            end = position.end()
            wait_until(lambda: position.committed() >= end, 600, f"the sink committing all {end:,} records")
            out.received = position.committed()
            out.extra["metrics"] = scrape(s)
        finally:
            load.stop()
            position.close()
            stop_process(sink)
        with EventStore(s.store_path, read_only=True) as store:
            ids = store.event_ids()
            out.stored = store.count()
            out.dead_lettered = store.count_dead()
            out.duplicates = store.count_duplicates()
            out.duplicated = store.duplicate_ids()
    fig = load.figures
    out.sent, out.acknowledged, out.unacknowledged = fig.sent, fig.acknowledged, fig.failed
    out.lost = len(fig.acknowledged_ids - ids)
    out.condition_met = out.lost == 0 and out.duplicated == 0 and len(out.recovery_s) == kills
    out.notes.append(f"{kills} SIGKILLs of the sink; recovery = kill to the restarted sink's first "
                     "new commit (includes the consumer group's rebalance)")
    out.notes.append("received = the group's committed offsets; stored, dead-lettered and duplicates "
                     "read from the DuckDB store")
    return out
