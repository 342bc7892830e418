"""Feature lookup without a broker: the batch side over one entity's events equals the batch
snapshot over all events, and a differing online value is flagged (the broker's side: the
browser test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow_playground.core.schema import Event
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.batch_sql import BatchFeatures
from dataflow_playground.features.definitions import by_entity
from dataflow_playground.features.online_store import OnlineStoreWriter, online_store_path
from dataflow_playground.features.parity import values_equal
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from dataflow_playground.services.dashboard import features


@pytest.fixture(scope="module")
def events() -> list[Event]:
    table = generate_table(GeneratorConfig(events=3_000, seed=7, users=50, merchants=20))
    return [Event.model_validate(row) for row in table.to_pylist()]


def _busiest(events: list[Event], key: str) -> int:
    counts: dict[int, int] = {}
    for e in events:
        counts[getattr(e, key)] = counts.get(getattr(e, key), 0) + 1
    return max(counts, key=lambda k: counts[k])


@pytest.mark.parametrize(("entity", "key"), [("user", "user_id"), ("merchant", "merchant_id")])
def test_batch_values_of_one_entity_equal_the_full_snapshot(events: list[Event], entity: str, key: str
                                                            ) -> None:
    from dataflow_playground.storage.duckdb_store import events_to_arrow

    eid = _busiest(events, key)
    mine = [e for e in events if getattr(e, key) == eid]
    as_of, values = features.batch_values(entity, eid, events)
    full = BatchFeatures(events_to_arrow(events)).snapshot()[(entity, eid)]
    assert as_of == max(e.ts for e in mine) + 1
    assert set(values) == {f.name for f in by_entity()[entity]}
    # Equal as parity counts equal: the sums add in another order over fewer rows.
    assert all(values_equal(values[name], full[name]) for name in values), (values, full)
    assert features.batch_values(entity, eid, []) == (None, {})


def test_lookup_puts_online_beside_batch_and_flags_differences(
        events: list[Event], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=tmp_path)
    uid = _busiest(events, "user_id")
    mine = [e for e in events if e.user_id == uid]
    monkeypatch.setattr(features, "entity_events",
                        lambda *_a, **_k: features.EntityEvents(mine, scanned=len(events)))

    first = features.lookup(settings, "user", uid)  # no online store yet
    assert first["online"] is None and "no online store" in first["online_error"]
    assert all(r["equal"] is None for r in first["features"]) and first["differences"] == 0
    assert first["batch"]["events"] == len(mine) and first["batch"]["records_scanned"] == len(events)

    as_of, batch = features.batch_values("user", uid, mine)
    assert as_of is not None
    online = dict(batch)
    online["user_txn_count_1h"] = int(str(batch["user_txn_count_1h"])) + 1
    writer = OnlineStoreWriter(online_store_path(settings))
    writer.write([("user", uid, as_of, online)])
    writer.close()

    got = features.lookup(settings, "user", uid)
    rows = {r["feature"]: r for r in got["features"]}
    assert got["differences"] == 1
    assert rows["user_txn_count_1h"]["equal"] is False
    assert rows["user_txn_count_1h"]["online"] == rows["user_txn_count_1h"]["batch"] + 1
    assert all(r["equal"] for name, r in rows.items() if name != "user_txn_count_1h")
    assert got["online"]["as_of"] == as_of and got["online"]["age_ms"] >= 0
    assert got["batch"]["newer_than_online"] == 0  # the online values hold every event

    # Online values as of an earlier event: the events after it are counted as not applied yet.
    second_last = sorted(e.ts for e in mine)[-2]
    writer = OnlineStoreWriter(online_store_path(settings))
    writer.con.execute("UPDATE online_features SET as_of = ? WHERE id = ?", (second_last, uid))
    writer.close()
    behind = features.lookup(settings, "user", uid)
    assert behind["batch"]["newer_than_online"] == sum(1 for e in mine if e.ts >= second_last)


def test_lookup_says_when_the_topic_is_too_long_to_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    note = "3,000,000 records of transactions to read"
    monkeypatch.setattr(features, "entity_events", lambda *_a, **_k: features.EntityEvents([], 0, note))
    got = features.lookup(Settings(data_dir=tmp_path), "merchant", 3)
    assert got["batch"]["as_of"] is None
    assert got["batch"]["note"] == "no batch values: 3,000,000 records of transactions to read"


class _Cluster:
    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return set(range(self.n))

    def available_partitions_for_topic(self, _topic: str) -> set[int]:
        return set(range(self.n))


@pytest.mark.parametrize("partitions", [1, 3, 7])
def test_a_users_partition_is_the_one_the_producer_sends_it_to(partitions: int) -> None:
    from dataflow_playground.producers.to_kafka import CachedKeyPartitioner

    producer_side = CachedKeyPartitioner()
    for user in range(500):
        key = str(user).encode()
        sent_to = producer_side.partition("t", key, key, None, None, _Cluster(partitions))
        assert features.key_partition(key, partitions) == sent_to, user
