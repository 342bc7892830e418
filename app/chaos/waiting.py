"""Bounded waits and Kafka positions the scenarios poll."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition

from dataflow_playground.app.chaos.env import ChaosError

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str,
               interval_s: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; :class:`ChaosError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise ChaosError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(interval_s)


class GroupPosition:
    """A consumer group's committed offsets and the topic's ends, summed over partitions."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                      enable_auto_commit=False, client_id=f"chaos-watch-{group}")

    def _tps(self) -> list[TopicPartition]:
        parts = self.consumer.partitions_for_topic(self.topic) or ()
        return [TopicPartition(self.topic, p) for p in sorted(parts)]

    def committed(self) -> int:
        return sum(self.consumer.committed(tp) or 0 for tp in self._tps())

    def end(self) -> int:
        return sum(self.consumer.end_offsets(self._tps()).values())

    def close(self) -> None:
        self.consumer.close()
