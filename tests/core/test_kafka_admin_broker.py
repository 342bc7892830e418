"""Admin helpers against the real broker: a topic just created is ready for a consumer group."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaConsumer

from dataflow_playground.core import kafka_admin
from dataflow_playground.core.errors import StackError

pytestmark = pytest.mark.kafka


def test_a_group_formed_right_after_ensure_topics_is_given_every_partition(bootstrap: str) -> None:
    """A member that joined before its first metadata response would lead the group with no
    partition metadata and assign nothing ("No partition metadata for topic"); kafka-python 3
    was seen not to assign again within 20 s (this test, with ``consumer.subscribe`` instead
    of ``kafka_admin.subscribe``, failed so in CI)."""
    names = [f"lead-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    kafka_admin.ensure_topics(bootstrap, [kafka_admin.TopicSpec(n, 4) for n in names])
    try:
        for name in names:
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"g-{name}",
                                     enable_auto_commit=False, session_timeout_ms=6000)
            kafka_admin.subscribe(consumer, [name])
            deadline = time.monotonic() + 20
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(timeout_ms=100)
            assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2, 3}, name
            consumer.close()
    finally:
        kafka_admin.delete_topics(bootstrap, names)


def test_waiting_for_a_topic_that_does_not_exist_says_so(bootstrap: str) -> None:
    with pytest.raises(StackError, match=r"without a leader.*nope-"):
        kafka_admin.wait_for_leaders(bootstrap, [f"nope-{uuid.uuid4().hex[:8]}"], timeout_s=0.5)
