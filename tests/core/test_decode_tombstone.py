"""A Kafka tombstone (a record with no value) is refused like any bad record, never a crash.

Both consumers decode whole polls with ``decode_batch``; a ``None`` among the values used to
raise ``TypeError`` from the fast path's join and stop the sink and the stream worker.
"""

from __future__ import annotations

from dataflow_playground.core.validation import Rejection, decode_batch, decode_event
from dataflow_playground.producers.generator import GeneratorConfig, encode_event, generate_events


def test_a_tombstone_in_a_batch_is_refused_and_its_neighbours_decoded() -> None:
    good = [encode_event(e) for e in generate_events(GeneratorConfig(events=3, seed=1))]
    out = decode_batch([good[0], None, good[1], good[2]])
    assert [isinstance(r, Rejection) for r in out] == [False, True, False, False]
    rejection = out[1]
    assert isinstance(rejection, Rejection)
    assert (rejection.field, rejection.kind) == ("<record>", "malformed_json")
    assert "tombstone" in rejection.reason
    assert decode_event(None) == rejection
