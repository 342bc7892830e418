"""Entry point of the producer *process* for a dataflow mode.

Run: ``python -m dataflow_playground.producers.flow`` (the flow harness in app/flow/modes does).

Generates the seeded events (``dataflow_playground.producers.generator``), sends them through the
mode's ``FlowWriter`` and writes a JSON report (send clock, CPU, the writer's
counts of errors, retries, rejections and give-ups) to ``--report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from dataflow_playground.producers.base import FlowWriter, run_producer
from dataflow_playground.producers.generator import GeneratorConfig, generate_events

MODES = ("db", "rest", "rpc", "kafka")


def make_writer(args: argparse.Namespace) -> FlowWriter:
    if args.mode == "db":
        from dataflow_playground.producers.to_db import DuckDBSegmentWriter

        return DuckDBSegmentWriter(Path(args.target), roll_ms=args.roll_ms)
    if args.mode == "rest":
        from dataflow_playground.producers.to_rest import RestWriter

        return RestWriter(args.target, timeout_s=args.timeout, attempts=args.attempts)
    if args.mode == "rpc":
        from dataflow_playground.producers.to_rpc import RpcWriter

        return RpcWriter(args.target, timeout_s=args.timeout, attempts=args.attempts,
                         stream_batches=args.stream_batches)
    from dataflow_playground.producers.to_kafka import KafkaWriter

    return KafkaWriter(args.target, args.topic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send seeded events through one dataflow mode.")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--target", required=True,
                        help="db: segment folder; rest: base URL; rpc: host:port; kafka: bootstrap")
    parser.add_argument("--topic", help="kafka: topic")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=None, help="offered events/s (default: max)")
    parser.add_argument("--roll-ms", type=float, default=50.0, help="db: seal a segment this often")
    parser.add_argument("--timeout", type=float, default=5.0, help="rest/rpc: per-call timeout (s)")
    parser.add_argument("--attempts", type=int, default=8, help="rest/rpc: tries per batch")
    parser.add_argument("--stream-batches", type=int, default=20, help="rpc: batches per stream")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)

    events = generate_events(GeneratorConfig(events=args.events, seed=args.seed))
    writer = make_writer(args)
    report = run_producer(writer, events, batch=args.batch, rate=args.rate)
    tmp = args.report.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(report)))
    tmp.replace(args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
