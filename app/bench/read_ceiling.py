"""An engine's Kafka client alone: how fast a worker's reading side goes with no work per record.

``python -m dataflow_playground.app.bench.read_ceiling --engine E --bootstrap B --topic T
--records N --app-id A`` reads topic ``T`` from its start in consumer group ``A``, with the
consumer settings of engine ``E``'s workers (:func:`.faust_engine.new_app`,
:func:`.kafka_python_engine.new_consumer`), and does nothing with the records but count them:

- ``kafka-python``: ``KafkaConsumer.poll`` in a loop;
- ``faust``: an agent iterating ``stream.events()``, as the worker's agent does.

After ``N`` records (or ``--timeout-s``) it prints one JSON object: the records counted after
the first delivery (the clock starts there, as a worker's catch-up clock starts once it owns
its tasks), the wall and CPU seconds they took, and the rate. :func:`.stream.read_ceiling`
runs it in a process of its own on a catch-up's topic: no worker can go faster than its own
client on this machine, so this is the ceiling under the engine's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dataflow_playground.core import kafka_admin
from dataflow_playground.features.stream.worker import WorkerConfig


class Clock:
    """Records counted after the first delivery, and the wall and CPU time they took."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.first_batch = 0
        self.wall0 = self.cpu0 = 0.0
        self.wall = self.cpu = 0.0

    def add(self, n: int) -> bool:
        """Count ``n`` records; True once ``target`` records were seen."""
        now, cpu = time.monotonic(), time.process_time()
        if not self.seen:
            self.wall0, self.cpu0, self.first_batch = now, cpu, n
        self.seen += n
        self.wall, self.cpu = now - self.wall0, cpu - self.cpu0
        return self.seen >= self.target

    def figures(self) -> dict[str, Any]:
        counted = self.seen - self.first_batch
        return {"records": self.seen, "counted": counted, "wall_s": self.wall, "cpu_s": self.cpu,
                "events_per_s": counted / self.wall if self.wall > 0 else None,
                "cpu_s_per_million": self.cpu / counted * 1e6 if counted else None}


def read_kafka_python(cfg: WorkerConfig, clock: Clock, timeout_s: float) -> None:
    from dataflow_playground.features.stream.kafka_python_engine import POLL_MAX_RECORDS, new_consumer

    consumer = new_consumer(cfg)
    kafka_admin.subscribe(consumer, [cfg.input_topic])  # (the metadata before the first poll joins)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=20, max_records=POLL_MAX_RECORDS)
            n = sum(len(msgs) for msgs in polled.values())
            if n and clock.add(n):
                return
    finally:
        consumer.close(autocommit=False)


def read_faust(cfg: WorkerConfig, clock: Clock, timeout_s: float) -> None:
    from dataflow_playground.features.stream.faust_engine import new_app, raw_topics

    app = new_app(cfg)
    done = asyncio.Event()

    async def count(stream: Any) -> None:
        async for _event in stream.events():
            if clock.add(1):
                done.set()

    app.agent(raw_topics(app, cfg.input_topic), name="count")(count)

    async def run() -> None:
        await app.start()
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            await app.stop()

    asyncio.run(run())


READERS: dict[str, Callable[[WorkerConfig, Clock, float], None]] = {
    "faust": read_faust, "kafka-python": read_kafka_python}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="An engine's Kafka client alone: events/s, no work per record.")
    p.add_argument("--engine", choices=sorted(READERS), required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--app-id", required=True, help="a fresh consumer group (it reads from the start)")
    p.add_argument("--timeout-s", type=float, default=600.0)
    args = p.parse_args(argv)
    clock = Clock(args.records)
    with tempfile.TemporaryDirectory(prefix="read-ceiling-") as tmp:
        cfg = WorkerConfig(bootstrap=args.bootstrap, input_topic=args.topic, output_topic="", dlq_topic="",
                           store=Path(tmp) / "unused.sqlite", app_id=args.app_id)
        READERS[args.engine](cfg, clock, args.timeout_s)
    sys.stdout.buffer.write(orjson.dumps({"engine": args.engine, **clock.figures()}) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
