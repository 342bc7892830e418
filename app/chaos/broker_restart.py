"""The only broker SIGKILLed mid-run and started again (single-node mode).

The producer (``acks=all``, idempotent, unbounded retries within its delivery timeout) keeps
sending while the broker is down: sends pile up in its buffer and go out once the broker is
back. Pass: every acknowledged event is in the topic exactly once after the restart. The
producer's stall is the longest gap between two acknowledgements.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dataflow_playground.app import stack
from dataflow_playground.app.chaos.accounting import Outcome
from dataflow_playground.app.chaos.env import ChaosEnv
from dataflow_playground.app.chaos.load import ProducerLoad
from dataflow_playground.app.chaos.topic_read import event_id_counts
from dataflow_playground.app.chaos.waiting import wait_until
from dataflow_playground.core import kafka_admin
from dataflow_playground.core.settings import Settings
from dataflow_playground.producers.generator import GeneratorConfig, wire_records

NAME = "broker-restart"
CONDITION = "0 acknowledged events lost or doubled once the broker is back"


def run(base: Settings, quick: bool, say: Callable[[str], None], seed: int = 11) -> Outcome:
    events, rate, down_s = (20_000, 2_000.0, 3.0) if quick else (300_000, 5_000.0, 10.0)
    out = Outcome(scenario=NAME, condition=CONDITION)
    with ChaosEnv(base, NAME) as env:
        s = env.settings
        say("starting Kafka (one broker)")
        env.start_kafka()
        records = list(wire_records(GeneratorConfig(events=events, seed=seed)))
        load = ProducerLoad(s.bootstrap_servers, s.topic, records, rate=rate)
        load.start()
        try:
            wait_until(lambda: load.progress()[1] >= events // 3, 300, "a third of the events acknowledged")
            t_kill = time.monotonic()
            env.kill(stack.KAFKA)
            say(f"broker SIGKILLed at {load.progress()[1]:,} acknowledged; down for {down_s:.0f}s")
            time.sleep(down_s)
            t_restart = time.monotonic()
            env.start(stack.KAFKA)
            start_s = time.monotonic() - t_restart
            say(f"broker healthy again after {start_s:.1f}s")
            first = wait_until(lambda: load.figures.first_ack_after(t_kill), 180,
                               "the producer's first acknowledgement after the restart")
            out.recovery_s.append(round(first - t_kill, 2))
            load.join(timeout=600)
            if load.error:
                raise load.error
        finally:
            load.stop()
        kafka_admin.wait_for_leaders(s.bootstrap_servers, [s.topic])
        counts, unreadable = event_id_counts(s.bootstrap_servers, s.topic)
    fig = load.figures
    out.sent, out.acknowledged, out.unacknowledged = fig.sent, fig.acknowledged, fig.failed
    out.received = sum(counts.values()) + unreadable
    out.stored = len(counts)
    out.duplicates = out.received - out.stored
    out.duplicated = sum(1 for n in counts.values() if n > 1)
    out.lost = len(fig.acknowledged_ids - set(counts))
    stall = fig.longest_stall_s(after=t_kill - 1.0)
    out.extra.update({"producer_stall_s": round(stall, 2), "broker_start_s": round(start_s, 2),
                      "down_s": down_s, "send_errors": dict(fig.errors)})
    out.condition_met = out.lost == 0 and out.duplicated == 0
    out.notes.append(f"producer stalled {stall:.1f}s (longest gap between acknowledgements); the "
                     f"broker was down {down_s:.0f}s and took {start_s:.1f}s to start again")
    out.notes.append("received/stored counted by reading the topic back (records / distinct event ids)")
    return out
