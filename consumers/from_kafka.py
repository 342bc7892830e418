"""Through Kafka, the reading side of ``playground flow kafka``: one group member.

Members of *different* groups each get every event (pub/sub); members of *one*
group split the partitions between them (queue). Each polled batch is validated,
its receipts written, then its offsets committed synchronously before the next
poll, so a rebalance (which happens inside ``poll``) never hands another member
records this one already took. Assignments are written to ``<name>.assign.json``
so the runner can start producing once the group is settled.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from dataflow_playground.core import kafka_admin, receipts
from dataflow_playground.core.kafka_codecs import require_codecs
from dataflow_playground.core.validation import Rejection, decode_event
from dataflow_playground.producers.to_kafka import SENT_HEADER


class _Announce(ConsumerRebalanceListener):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.path.write_text(json.dumps({"partitions": [], "pid": os.getpid()}))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"partitions": sorted(tp.partition for tp in assigned),
                                   "pid": os.getpid()}))
        os.replace(tmp, self.path)


class KafkaReader:
    def __init__(self, bootstrap: str, topic: str, group: str, receipts_dir: Path, name: str) -> None:
        require_codecs("kafka-python", f"the Kafka flow reader {name}")
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=f"{name}-{os.getpid()}",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000,
            fetch_max_wait_ms=50, fetch_max_bytes=16 * 2**20, max_partition_fetch_bytes=8 * 2**20)
        kafka_admin.subscribe(self.consumer, [topic], _Announce(receipts_dir / f"{name}.assign.json"))
        self.log = receipts.ReceiptLog(receipts_dir / f"{name}{receipts.SUFFIX}")
        self.rejected = 0

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                polled = self.consumer.poll(timeout_ms=100)
                if not polled:
                    continue
                ids: list[int] = []
                sent: list[int] = []
                for batch in polled.values():
                    for rec in batch:
                        result = decode_event(rec.value)
                        if isinstance(result, Rejection):
                            self.rejected += 1
                            continue
                        ids.append(result.event_id)
                        header = dict(rec.headers or []).get(SENT_HEADER)
                        sent.append(int(header) if header else rec.timestamp * 1000)
                self.log.append(receipts.rows(ids, sent))
                self.consumer.commit()
        finally:
            self.consumer.close()
            self.log.close()
