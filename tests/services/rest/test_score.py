"""``POST /score`` with a real model file (trained on small seeded data) and a real online store:
the score, and every refusal (404, 409, 422, 503) with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
from fastapi.testclient import TestClient

from dataflow_playground.app.train.leakage import train_model
from dataflow_playground.core.settings import Settings
from dataflow_playground.features import model as model_mod
from dataflow_playground.features.definitions import FEATURES
from dataflow_playground.features.model import FraudModel, model_path, save_model
from dataflow_playground.features.online_store import OnlineStoreWriter, online_store_path
from dataflow_playground.producers.generator import GeneratorConfig, generate_table
from dataflow_playground.services.rest import features as features_route
from dataflow_playground.services.rest import score as score_route
from dataflow_playground.services.rest.app import create_app

USER_VALUES: dict[str, object] = {f.name: 2 for f in FEATURES if f.entity.name == "user"}
USER_VALUES.update(user_amount_avg_7d=None, user_amount_sum_24h=180.5, user_last_3_amounts=[1.0])
MERCHANT_VALUES: dict[str, object] = {f.name: 5 for f in FEATURES if f.entity.name == "merchant"}
EVENT = {"event_id": 99, "user_id": 7, "merchant_id": 3, "amount": 12.5, "currency": "EUR",
         "country": "DE", "device": "web", "ts": 1_767_225_600_000, "is_fraud": False}


@pytest.fixture(scope="module")
def trained() -> FraudModel:
    return train_model(generate_table(GeneratorConfig(events=3_000, seed=11, rate=0.2)), seed=11,
                       max_iter=10)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(data_dir=tmp_path)
    monkeypatch.setattr(features_route, "get_settings", lambda: s)
    monkeypatch.setattr(score_route, "get_settings", lambda: s)
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def _store(settings: Settings, user: dict[str, object] | None = None,
           merchant: dict[str, object] | None = None) -> None:
    writer = OnlineStoreWriter(online_store_path(settings))
    writer.write([("user", 7, 1_000, USER_VALUES if user is None else user),
                  ("merchant", 3, 2_000, MERCHANT_VALUES if merchant is None else merchant)], {})
    writer.close()


def _post(client: TestClient, **changes: Any) -> Any:
    return client.post("/score", json={**EVENT, **changes})


def test_scores_with_the_stored_values(client: TestClient, settings: Settings,
                                       trained: FraudModel) -> None:
    _store(settings)
    save_model(trained, model_path(settings))
    r = _post(client)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = trained.score({**USER_VALUES, **MERCHANT_VALUES})
    assert body["score"] == pytest.approx(expected, rel=1e-12)
    assert list(body["features"]) == list(trained.features)
    assert body["features"]["user_amount_sum_24h"] == 180.5
    assert body["features"]["user_amount_avg_7d"] is None  # a null is a missing value, scored
    assert (body["user"]["as_of"], body["merchant"]["as_of"]) == (1_000, 2_000)
    assert 0 <= body["age_ms"] < 60_000 and body["model_version"] == trained.version


def test_no_model_is_503_saying_what_to_run(client: TestClient, settings: Settings) -> None:
    _store(settings)
    r = _post(client)
    assert r.status_code == 503
    assert "playground train leakage" in r.json()["detail"]


def test_incompatible_model_is_503_naming_the_mismatch(client: TestClient, settings: Settings,
                                                       trained: FraudModel) -> None:
    _store(settings)
    doc = trained.to_doc()
    doc["features"] = [*doc["features"][:-1], "merchant_refund_rate_7d"]
    doc["fingerprints"]["merchant_refund_rate_7d"] = "merchant:?"
    path = model_path(settings)
    path.parent.mkdir(parents=True)
    joblib.dump(doc, path)
    model_mod._load_cached.cache_clear()
    r = _post(client)
    assert r.status_code == 503
    assert "incompatible feature list" in r.json()["detail"]
    assert "merchant_refund_rate_7d" in r.json()["detail"]


def test_no_online_store_is_503(client: TestClient, settings: Settings, trained: FraudModel) -> None:
    save_model(trained, model_path(settings))
    r = _post(client)
    assert r.status_code == 503 and "playground up" in r.json()["detail"]


@pytest.mark.parametrize(("changes", "named"), [
    ({"user_id": 8}, "no features for user 8"),
    ({"merchant_id": 4}, "no features for merchant 4"),
])
def test_unseen_entity_is_404_naming_it(client: TestClient, settings: Settings, trained: FraudModel,
                                        changes: dict[str, int], named: str) -> None:
    _store(settings)
    save_model(trained, model_path(settings))
    r = _post(client, **changes)
    assert r.status_code == 404 and named in r.json()["detail"]


def test_missing_feature_is_409_naming_it(client: TestClient, settings: Settings,
                                          trained: FraudModel) -> None:
    _store(settings, merchant={k: v for k, v in MERCHANT_VALUES.items()
                               if k != "merchant_distinct_users_24h"})
    save_model(trained, model_path(settings))
    r = _post(client)
    assert r.status_code == 409
    assert r.json()["detail"]["field"] == "merchant_distinct_users_24h"
    assert "merchant 3" in r.json()["detail"]["reason"]


def test_non_number_feature_is_409(client: TestClient, settings: Settings, trained: FraudModel) -> None:
    _store(settings, user={**USER_VALUES, "user_txn_count_1h": "many"})
    save_model(trained, model_path(settings))
    r = _post(client)
    assert r.status_code == 409 and r.json()["detail"]["field"] == "user_txn_count_1h"


@pytest.mark.parametrize(("changes", "field"), [
    ({"amount": -1.0}, "amount"), ({"user_id": "7"}, "user_id"), ({"currency": "XYZ"}, "currency"),
])
def test_bad_event_is_422_naming_the_field(client: TestClient, settings: Settings,
                                           trained: FraudModel, changes: dict[str, Any],
                                           field: str) -> None:
    _store(settings)
    save_model(trained, model_path(settings))
    r = _post(client, **changes)
    assert r.status_code == 422 and r.json()["detail"]["field"] == field
