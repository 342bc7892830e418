"""``GET /features/{entity}/{id}`` over a real online store file: values, 404s, 503, and every
request's store reader closed again, whatever the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from dataflow_playground.core.settings import Settings
from dataflow_playground.features.online_store import (
    OnlineStoreReader,
    OnlineStoreWriter,
    online_store_path,
)
from dataflow_playground.services.rest import features as features_route
from dataflow_playground.services.rest.app import create_app

VALUES = {"user_txn_count_1h": 3, "user_amount_sum_24h": 41.5}


class CountingReader(OnlineStoreReader):
    opened: ClassVar[list[CountingReader]] = []

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.closed = False
        CountingReader.opened.append(self)

    def close(self) -> None:
        self.closed = True
        super().close()


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    monkeypatch.setattr(features_route, "get_settings", lambda: settings)
    monkeypatch.setattr(features_route, "OnlineStoreReader", CountingReader)
    CountingReader.opened = []
    with TestClient(create_app()) as c:
        yield c


def _write_store(tmp_path: Path) -> None:
    writer = OnlineStoreWriter(online_store_path(Settings(data_dir=tmp_path)))
    writer.write([("user", 7, 1_000, VALUES)], {"user-0": {"late_accepted": 2, "late_dropped": 1}})
    writer.close()


def test_known_entity_returns_its_values(client: TestClient, tmp_path: Path) -> None:
    _write_store(tmp_path)
    r = client.get("/features/user/7")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["entity"], body["id"], body["as_of"], body["values"]) == ("user", 7, 1_000, VALUES)
    assert (body["late_events_accepted"], body["late_events_dropped"]) == (2, 1)
    assert 0 <= body["age_ms"] < 60_000
    assert [rd.closed for rd in CountingReader.opened] == [True]


@pytest.mark.parametrize(("path", "detail"), [
    ("/features/user/8", "no features for user 8"),
    ("/features/planet/7", "unknown entity 'planet'"),
])
def test_not_found_closes_the_reader(client: TestClient, tmp_path: Path, path: str, detail: str) -> None:
    _write_store(tmp_path)
    r = client.get(path)
    assert r.status_code == 404
    assert detail in r.json()["detail"]
    assert [rd.closed for rd in CountingReader.opened] == [True]


def test_no_store_yet_is_503_and_says_what_to_do(client: TestClient) -> None:
    r = client.get("/features/user/7")
    assert r.status_code == 503
    assert "playground up" in r.json()["detail"]
    assert CountingReader.opened == []


def test_negative_id_is_422_naming_the_field(client: TestClient, tmp_path: Path) -> None:
    _write_store(tmp_path)
    r = client.get("/features/user/-1")
    assert r.status_code == 422
    assert "entity_id" in r.text


@pytest.mark.parametrize("entity_id", [str(2**63), str(2**64 + 5), "9" * 40])
def test_id_beyond_int64_is_422_naming_the_field_not_a_500(client: TestClient, tmp_path: Path,
                                                          entity_id: str) -> None:
    _write_store(tmp_path)
    r = client.get(f"/features/user/{entity_id}")
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == "entity_id"
    assert all(rd.closed for rd in CountingReader.opened)


def test_id_at_the_int64_bound_is_looked_up(client: TestClient, tmp_path: Path) -> None:
    _write_store(tmp_path)
    r = client.get(f"/features/user/{2**63 - 1}")
    assert r.status_code == 404 and "no features for user" in r.json()["detail"]
    assert [rd.closed for rd in CountingReader.opened] == [True]
