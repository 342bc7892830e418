"""The model file: saved and loaded with its feature list; anything else is refused by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import joblib
import pytest

from dataflow_playground.app.train.leakage import train_model
from dataflow_playground.features import definitions, model
from dataflow_playground.features.model import (
    FraudModel,
    ModelIncompatible,
    ModelMissing,
    load_model,
    save_model,
)
from dataflow_playground.producers.generator import GeneratorConfig, generate_table


@pytest.fixture(scope="module")
def small_model() -> FraudModel:
    return train_model(generate_table(GeneratorConfig(events=3_000, seed=7, rate=0.2)), seed=7,
                       max_iter=10)


def test_round_trip_scores_the_same(small_model: FraudModel, tmp_path: Path) -> None:
    path = save_model(small_model, tmp_path / "m" / "fraud.joblib")
    loaded = load_model(path)
    assert loaded.features == small_model.features
    assert "user_last_3_amounts" not in loaded.features  # list features are not model inputs
    values: dict[str, object] = dict.fromkeys(loaded.features, 1.0)
    values["user_amount_avg_7d"] = None  # null is a missing value, not an error
    assert loaded.score(values) == pytest.approx(small_model.score(values), abs=0)
    assert 0.0 <= loaded.score(values) <= 1.0


def test_absent_file_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="playground train leakage"):
        load_model(tmp_path / "fraud.joblib")


def test_a_redefined_feature_is_named(small_model: FraudModel, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_model(small_model, tmp_path / "fraud.joblib")
    changed = tuple(dataclasses.replace(f, window_ms=2 * f.window_ms)
                    if f.name == "user_txn_count_1h" else f for f in definitions.FEATURES)
    monkeypatch.setattr(model, "FEATURES", changed)
    model._load_cached.cache_clear()
    with pytest.raises(ModelIncompatible, match="user_txn_count_1h") as err:
        load_model(path)
    assert "redefined" in str(err.value)


def test_a_feature_gone_from_the_definitions_is_named(small_model: FraudModel, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_model(small_model, tmp_path / "fraud.joblib")
    monkeypatch.setattr(model, "FEATURES",
                        tuple(f for f in definitions.FEATURES if f.name != "merchant_amount_min_24h"))
    model._load_cached.cache_clear()
    with pytest.raises(ModelIncompatible, match="no longer defined: merchant_amount_min_24h"):
        load_model(path)


def test_a_foreign_or_broken_file_is_refused(small_model: FraudModel, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"weights": [1, 2, 3]}, foreign)
    with pytest.raises(ModelIncompatible, match="is not a"):
        load_model(foreign)
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(b"not a pickle")
    with pytest.raises(ModelIncompatible, match="cannot read"):
        load_model(broken)
    doc = small_model.to_doc()
    doc["features"] = doc["features"][:-1]  # the estimator takes one more than listed
    short = tmp_path / "short.joblib"
    joblib.dump(doc, short)
    with pytest.raises(ModelIncompatible, match="takes 11 features but the file lists 10"):
        load_model(short)


def test_a_non_number_is_refused_not_guessed(small_model: FraudModel) -> None:
    values: dict[str, object] = dict.fromkeys(small_model.features, 1.0)
    values["user_txn_count_1h"] = "3"
    with pytest.raises(TypeError, match="user_txn_count_1h"):
        small_model.score(values)
    del values["user_txn_count_1h"]
    with pytest.raises(KeyError, match="user_txn_count_1h"):
        small_model.score(values)
