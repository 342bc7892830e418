"""One Kafka hop, read from a process of its own, as the stream workers read their input.

``python -m dataflow_playground.app.bench.hop_consumer --bootstrap B --topic T --records N``
prints ``ready`` once it is assigned and fetching, then, after ``N`` records (or
``--timeout-s``), one JSON list: per record, its receive time minus its Kafka CreateTime, in
ms. :func:`~.stream.kafka_hop` runs it beside its paced producer, so the consumer reads from
a process of its own as the stream workers do, not sharing the benchmark's interpreter lock
with the producer's threads and the progress display.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from kafka import KafkaConsumer

from dataflow_playground.features.stream.kafka_python_engine import FETCH_MAX_WAIT_MS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Receive latency of one Kafka hop, per record (ms).")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--timeout-s", type=float, default=120.0)
    args = p.parse_args(argv)
    # The kafka-python workers' fetch settings.
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    latencies: list[float] = []
    try:
        consumer.poll(timeout_ms=1000)  # assigned and fetching before the producer starts
        print("ready", flush=True)
        deadline = time.monotonic() + args.timeout_s
        while len(latencies) < args.records and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=20, max_records=50_000).values():
                now_ms = time.time() * 1000
                latencies.extend(now_ms - m.timestamp for m in msgs)
    finally:
        consumer.close()
    sys.stdout.buffer.write(orjson.dumps(latencies) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
