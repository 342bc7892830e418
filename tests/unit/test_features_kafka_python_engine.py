"""The kafka-python engine's broker-free core: batch decoding and its poll loop fed from lists.

Seeded data (seed printed in each test's parameters) so a failure can be replayed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

from features.batch_sql import BatchFeatures
from features.definitions import FEATURES
from features.kafka_python_worker import make_runner, step
from features.online_store import OnlineStoreReader, OnlineStoreWriter
from features.parity import compare
from features.stream_runner import Record
from features.worker_common import WorkerConfig
from playground.schema import Event
from playground.validation import Rejection, decode_batch, decode_event
from producers.generator import MALFORMED_KINDS, GeneratorConfig, generate_table, wire_records

PARTITIONS = 3


def _records(cfg: GeneratorConfig) -> dict[int, list[Record]]:
    """Wire records split over partitions by user key (per-key order kept), with offsets."""
    parts: dict[int, list[Record]] = defaultdict(list)
    for i, r in enumerate(wire_records(cfg)):
        p = int(r.key) % PARTITIONS
        parts[p].append((p, len(parts[p]), r.key, r.value, 1_000 + i))
    return parts


def _outcome(x: Event | Rejection) -> object:
    return ("rejected", x.field) if isinstance(x, Rejection) else x


def test_decode_batch_matches_one_by_one() -> None:
    cfg = GeneratorConfig(events=400, seed=21, malformed_rate=0.3)
    values = [r.value for r in wire_records(cfg)]
    kinds = {r.malformed for r in wire_records(cfg)}
    assert kinds >= set(MALFORMED_KINDS)  # every breakage is in the mix
    good = [v for v, r in zip(values, wire_records(cfg), strict=True) if r.malformed is None]
    assert decode_batch(good) == [decode_event(v) for v in good]  # the fast path
    # The fallback (a Rejection's message may quote the clock, so compare its field).
    assert [_outcome(x) for x in decode_batch(values)] == [_outcome(decode_event(v)) for v in values]
    # One record holding two events must not pass as two.
    pair = good[0] + b"," + good[1]
    out = decode_batch([pair, good[2]])
    assert out[1] == decode_event(good[2]) and out[0] == decode_event(pair)
    assert not hasattr(out[0], "event_id")


@pytest.mark.parametrize("seed", [31, 32])
def test_poll_loop_equals_batch_and_dead_letters(tmp_path: Path, seed: int) -> None:
    cfg = GeneratorConfig(events=3000, seed=seed, rate=2.0, malformed_rate=0.05)
    parts = _records(cfg)
    malformed = sum(r.malformed is not None for r in wire_records(cfg))
    sent: dict[int, dict[str, object]] = {}
    dead: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def send_features(_key: bytes, value: bytes) -> None:
        import orjson

        rec = orjson.loads(value)
        if rec["kind"] == "event":
            sent[rec["event_id"]] = rec["values"]

    store = OnlineStoreWriter(tmp_path / "online.sqlite")
    wcfg = WorkerConfig("unused:0", "in", "out", "dlq", tmp_path / "online.sqlite")
    runner = make_runner(wcfg, list(range(PARTITIONS)), store, send_features,
                         lambda k, v, h: dead.append((k, v, h)))
    # Polls of uneven size, partitions interleaved the way a consumer returns them.
    pos = dict.fromkeys(parts, 0)
    size = 1
    while any(pos[p] < len(parts[p]) for p in parts):
        polled = []
        for p in parts:
            polled.append((p, parts[p][pos[p]:pos[p] + size]))
            pos[p] += size
        step(runner, polled, "in")
        size = size * 3 % 701 + 1
    runner.drain(now=time.monotonic() + 60)  # every partition idle by then: the tail is released
    store.close()

    assert runner.stats.dead_lettered == len(dead) == malformed > 0
    assert all(dict(h)["reason"] and dict(h)["stage"] == b"features-worker" for _k, _v, h in dead)
    good = {r.event_id for r in wire_records(cfg) if r.event_id is not None}
    table = generate_table(cfg)
    table = table.filter([eid in good for eid in table.column("event_id").to_pylist()])
    batch = BatchFeatures(table)
    training = batch.training_table().to_pylist()
    assert len(sent) == len(training)
    report = compare(((r["event_id"], r) for r in training), sent)
    assert {n: p.mismatches for n, p in report.items()} == dict.fromkeys(report, 0)
    reader = OnlineStoreReader(tmp_path / "online.sqlite")
    online = reader.all()
    reader.close()
    snapshot = batch.snapshot()
    for f in FEATURES:
        rows = [(k, v) for k, v in snapshot.items() if k[0] == f.entity.name]
        assert compare(rows, online, features=(f,))[f.name].mismatches == 0, f.name


def test_stack_runs_the_engine_the_settings_name() -> None:
    from pydantic import ValidationError

    from playground.settings import Settings
    from playground.stack import FEATURES_WORKER

    assert FEATURES_WORKER.command(Settings())[-1] == "features.faust_worker"  # the default
    chosen = Settings(stream_engine="kafka-python")
    assert FEATURES_WORKER.command(chosen)[-1] == "features.kafka_python_worker"
    with pytest.raises(ValidationError):
        Settings(stream_engine="spark")
