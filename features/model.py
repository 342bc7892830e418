"""The fraud model's file format and loader: what the REST service scores with.

Training lives in ``app/train`` (``playground train leakage``); this module only defines the
file and checks it against the feature definitions, so the service (which may import the
features layer, not the app) can load it.

The file is a joblib pickle of one dict (:data:`FORMAT`, :data:`FORMAT_VERSION`) holding the
fitted scikit-learn estimator, the ordered feature names it was fitted on, a fingerprint of
each feature's definition, a model ``version`` and training metadata. A model is
*compatible* only if every feature it needs still exists in
:data:`~dataflow_playground.features.definitions.FEATURES` with the same definition (entity,
aggregation, window, column, filter): a renamed or redefined feature is refused by name,
never scored with a silent default. Loading a pickle runs code: load only files you wrote.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.definitions import FEATURES, FeatureSpec

FORMAT = "dataflow-playground/fraud-model"
FORMAT_VERSION = 1
TRAIN_COMMAND = "playground train leakage"



# Below this many rows a prediction runs on one OpenMP thread (see FraudModel.score_rows).
_PARALLEL_FROM_ROWS = 256


@lru_cache(maxsize=1)
def _threadpools() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()

class ModelError(PlaygroundError):
    """The model cannot be used; the message says why and what to do."""


class ModelMissing(ModelError):
    """No model file yet."""


class ModelIncompatible(ModelError):
    """The file is not a model of this format, or its features no longer match the definitions."""


def model_path(settings: Settings) -> Path:
    return settings.data_dir / "model" / "fraud.joblib"


def model_features(features: Sequence[FeatureSpec] = FEATURES) -> list[FeatureSpec]:
    """The features a model takes: every scalar feature (lists such as last-k are left out)."""
    return [f for f in features if not f.is_list]


def fingerprint(spec: FeatureSpec) -> str:
    """What a feature means, as text: two specs with the same fingerprint compute the same value."""
    where = spec.where.label() if spec.where else "-"
    return (f"{spec.entity.name}:{spec.agg.value}:{spec.column or '-'}:{spec.window_ms}ms:"
            f"k={spec.k}:where={where}")


def check_compatible(names: Sequence[str], fingerprints: Mapping[str, str],
                     features: Sequence[FeatureSpec] | None = None) -> None:
    """Raise :class:`ModelIncompatible` naming every feature that is gone or was redefined."""
    current = {f.name: f for f in (FEATURES if features is None else features)}
    gone = [n for n in names if n not in current]
    lists = [n for n in names if n in current and current[n].is_list]
    changed = [f"{n} (trained on {fingerprints.get(n)!r}, defined now as {fingerprint(current[n])!r})"
               for n in names if n in current and fingerprints.get(n) != fingerprint(current[n])]
    problems = []
    if gone:
        problems.append(f"features no longer defined: {', '.join(gone)}")
    if lists:
        problems.append(f"list features cannot be scored: {', '.join(lists)}")
    if changed:
        problems.append(f"features redefined since training: {'; '.join(changed)}")
    if problems:
        raise ModelIncompatible(
            "the model was trained on an incompatible feature list: " + "; ".join(problems)
            + f". Retrain it with '{TRAIN_COMMAND}'.")


@dataclass(frozen=True)
class FraudModel:
    """A fitted estimator with the ordered feature list it takes."""

    estimator: Any
    features: tuple[str, ...]
    version: str
    fingerprints: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def row(self, values: Mapping[str, object]) -> list[float]:
        """The model's input for one vector: null -> NaN (the estimator handles missing values).

        A key that is absent, or a value that is not a number, raises ``KeyError`` /
        ``TypeError`` naming the feature: callers refuse such a vector, they do not guess.
        """
        out = []
        for name in self.features:
            if name not in values:
                raise KeyError(name)
            v = values[name]
            if v is None:
                out.append(math.nan)
            elif isinstance(v, bool) or not isinstance(v, int | float):
                raise TypeError(f"{name} is {type(v).__name__}, not a number")
            else:
                out.append(float(v))
        return out

    def score_rows(self, rows: Sequence[Sequence[float]]) -> list[float]:
        import numpy as np

        if not rows:
            return []
        x = np.asarray(rows, dtype=np.float64)
        if len(x) >= _PARALLEL_FROM_ROWS:
            proba = self.estimator.predict_proba(x)
        else:
            # For a handful of rows the OpenMP team costs more than it saves: one row took
            # 10.3 ms with the default threads and 2.4 ms with one, on 2 cores (POST /score).
            with _threadpools().limit(limits=1, user_api="openmp"):
                proba = self.estimator.predict_proba(x)
        return [float(p) for p in proba[:, 1]]

    def score(self, values: Mapping[str, object]) -> float:
        return self.score_rows([self.row(values)])[0]

    def to_doc(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "version": self.version,
                "features": list(self.features), "fingerprints": dict(self.fingerprints),
                "metadata": dict(self.metadata), "estimator": self.estimator}


def save_model(model: FraudModel, path: Path) -> Path:
    """Write atomically (temporary file, then rename): a reader never sees half a model."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    joblib.dump(model.to_doc(), tmp)
    tmp.replace(path)
    return path


def _from_doc(doc: object, path: Path) -> FraudModel:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelIncompatible(f"{path} is not a {FORMAT} file. Retrain with '{TRAIN_COMMAND}'.")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelIncompatible(
            f"{path} has model format version {doc.get('format_version')!r}; this service reads "
            f"version {FORMAT_VERSION}. Retrain with '{TRAIN_COMMAND}'.")
    names = [str(n) for n in doc.get("features", [])]
    if not names:
        raise ModelIncompatible(f"{path} lists no features. Retrain with '{TRAIN_COMMAND}'.")
    fingerprints = {str(k): str(v) for k, v in dict(doc.get("fingerprints", {})).items()}
    check_compatible(names, fingerprints)
    estimator = doc.get("estimator")
    if not hasattr(estimator, "predict_proba"):
        raise ModelIncompatible(f"{path} holds no fitted classifier. Retrain with '{TRAIN_COMMAND}'.")
    n_in = getattr(estimator, "n_features_in_", len(names))
    if n_in != len(names):
        raise ModelIncompatible(f"{path}: the estimator takes {n_in} features but the file lists "
                                f"{len(names)}. Retrain with '{TRAIN_COMMAND}'.")
    return FraudModel(estimator, tuple(names), str(doc.get("version", "unknown")), fingerprints,
                      dict(doc.get("metadata", {})))


@lru_cache(maxsize=4)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> FraudModel:
    import joblib

    try:
        doc = joblib.load(path)
    except Exception as err:  # a truncated or foreign file: say so, do not crash the caller
        raise ModelIncompatible(f"cannot read the model file {path}: {type(err).__name__}: {err}. "
                                f"Retrain with '{TRAIN_COMMAND}'.") from err
    return _from_doc(doc, Path(path))


def load_model(path: Path) -> FraudModel:
    """The model at ``path``, checked against the feature definitions; cached until the file changes."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelMissing(f"no model at {path}: train one with '{TRAIN_COMMAND}' "
                           "(it writes the model there).") from None
    return _load_cached(str(path), st.st_mtime_ns, st.st_size)
