"""Packed binary records between the stream tasks and in checkpoints (numpy structured arrays).

The user tasks forward every event they processed to the repartition topic, keyed by
merchant, and the merchant tasks read them back; a checkpoint stores the entries a task's
state holds. Both are fixed-width little-endian rows, so one Kafka record carries a whole
micro-batch and decoding is one ``numpy.frombuffer`` call, not one JSON parse per event.

A repartition row (:data:`SHUFFLE`) is either an event (``kind`` 0) or a watermark mark
(``kind`` 1: "source partition ``src`` has reached ``ts``", ``ts`` may be
:data:`~.event_time.IDLE`). ``src_offset`` is the event's offset in its source partition:
the merchant task drops a row it has already applied (a user task re-sends what came after
its checkpoint when it recovers), so the shuffle is effectively exactly once. In an idle
mark it is the source partition's offset the mark is true for; in other marks, -1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dataflow_playground.features.stream.state import ENTRY_DTYPE as ENTRY
from dataflow_playground.features.stream.state import Entry

SHUFFLE = np.dtype([("kind", "<i1"), ("src", "<i2"), ("src_offset", "<i8"), ("produced", "<i8"),
                    ("ts", "<i8"), ("eid", "<i8"), ("amount", "<f8"), ("user", "<i8"),
                    ("merchant", "<i8")])
EVENT, MARK = 0, 1
# One shuffled row as a tuple: (kind, src, src_offset, produced_ms, ts, eid, amount, user, merchant).
ShuffleRow = tuple[int, int, int, int, int, int, float, int, int]


def pack_entries(entries: Sequence[Entry]) -> bytes:
    return np.array(entries, dtype=ENTRY).tobytes() if entries else b""


def unpack_entries(data: bytes) -> np.ndarray:
    """Rows of :data:`ENTRY` (``.tolist()`` gives the entry tuples)."""
    return np.frombuffer(data, dtype=ENTRY)


def pack_shuffle(rows: Sequence[ShuffleRow]) -> bytes:
    return np.array(rows, dtype=SHUFFLE).tobytes() if rows else b""


def unpack_shuffle(data: bytes) -> list[ShuffleRow]:
    if len(data) % SHUFFLE.itemsize:
        raise ValueError(f"a repartition record of {len(data)} bytes is not a whole number of "
                         f"{SHUFFLE.itemsize}-byte rows")
    return np.frombuffer(data, dtype=SHUFFLE).tolist()


def merchant_partition(merchant_id: int, partitions: int) -> int:
    """The repartition topic's partition for a merchant (its state lives with that partition)."""
    return merchant_id % partitions
