"""Entry point of the consumer *process* for a dataflow mode.

Run: ``python -m dataflow_playground.consumers.flow`` (the flow harness in app/flow/modes does).

SIGTERM stops it cleanly (the Kafka member leaves its group; the DB reader
finishes its poll). SIGKILL is what the fault runs use instead.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from dataflow_playground.consumers.from_db import DuckDBSegmentReader
from dataflow_playground.consumers.from_kafka import KafkaReader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Consume one dataflow mode, writing receipts.")
    parser.add_argument("--mode", choices=["db", "kafka"], required=True)
    parser.add_argument("--receipts", type=Path, required=True, help="folder for receipt files")
    parser.add_argument("--name", default="reader")
    parser.add_argument("--segments", type=Path, help="db: folder of DuckDB segments")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="db: polling interval")
    parser.add_argument("--bootstrap", help="kafka: bootstrap servers")
    parser.add_argument("--topic", help="kafka: topic")
    parser.add_argument("--group", help="kafka: consumer group")
    args = parser.parse_args(argv)
    args.receipts.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.mode == "db":
        if args.segments is None:
            parser.error("--segments is required for --mode db")
        reader = DuckDBSegmentReader(args.segments, args.receipts, args.poll_ms)
        (args.receipts / f"{args.name}.ready").touch()
        reader.run(stop)
    else:
        if not (args.bootstrap and args.topic and args.group):
            parser.error("--bootstrap, --topic and --group are required for --mode kafka")
        KafkaReader(args.bootstrap, args.topic, args.group, args.receipts, args.name).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
