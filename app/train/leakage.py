"""Splits and leakage: the same model, evaluated honestly and dishonestly, then checked later.

One seeded baseline model (scikit-learn ``HistGradientBoostingClassifier``) is trained on the
batch training table of the point-in-time-correct features
(:class:`~dataflow_playground.features.batch_sql.BatchFeatures`). The events are split by
event time into an *early* part and a *later* held-out period (the last
``holdout_fraction``). On the early part, each combination of

- a **split**: ``random`` (rows shuffled: the test rows sit between training rows, inside the
  same fraud bursts) or ``time`` (train on the first part of the early period, test on its
  end), and
- a **feature variant**: ``correct`` (the production SQL, window ``[ts - W, ts)``), or a leaky
  variant of the *same* feature specs compiled here with a wrong frame:
  ``leaky_self`` (``[ts - W, ts]``: the event itself and its same-time peers are counted) and
  ``leaky_future`` (``[ts - W, ts + W]``: events up to one window *later* are counted, what a
  feature computed per time bucket and joined back gives),

gives an *offline* AUC (test part of the early period, same variant's features) and a
*later-period* AUC: the model scored on the held-out period with the CORRECT features, as
production would serve them. Leakage shows as an offline AUC the later period does not keep.

Baselines on the same rows: the zero rule (one constant score: AUC-ROC 0.5, AUC-PR the
positive rate) and a heuristic (score = the user's payments in the last hour).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure

from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.features.batch_sql import BatchFeatures, scalar_aggregate_sql
from dataflow_playground.features.definitions import FEATURES, Agg, FeatureSpec
from dataflow_playground.features.model import (
    FraudModel,
    fingerprint,
    model_features,
    save_model,
)
from dataflow_playground.producers.generator import GeneratorConfig, generate_table

VARIANTS = ("correct", "leaky_self", "leaky_future")
SPLITS = ("random", "time")
# The leaky frames (``{w}`` is the feature's window in ms). The correct frame is batch_sql's,
# untouched: ``[ts - W, ts)``.
LEAKY_FRAMES: dict[str, str] = {
    "leaky_self": "RANGE BETWEEN {w} PRECEDING AND CURRENT ROW",
    "leaky_future": "RANGE BETWEEN {w} PRECEDING AND {w} FOLLOWING",
}
# Simple-rule baselines: score = one correct feature (velocity, and large payments).
HEURISTIC_FEATURES = ("user_txn_count_1h", "user_large_txn_count_24h")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LeakageConfig:
    events: int = 100_000
    seed: int = 42
    # Events per second of event time: 100,000 events span about 6 days, so the 1-hour and
    # 24-hour windows slide and the fraud bursts (15 min each) are short against the run.
    rate: float = 0.2
    # More, smaller bursts than the generator's default (5): each period then holds several, so
    # an AUC is not decided by whether one burst fell into it (~2 % fraud either way).
    fraud_bursts: int = 30
    holdout_fraction: float = 0.3  # the later period, by event time
    test_fraction: float = 0.3  # of the early period: the offline evaluation rows
    max_iter: int = 150

    def __post_init__(self) -> None:
        checks = {"events": self.events >= 1_000, "rate": self.rate > 0,
                  "fraud_bursts": self.fraud_bursts >= 0,
                  "holdout_fraction": 0 < self.holdout_fraction < 1,
                  "test_fraction": 0 < self.test_fraction < 1, "max_iter": self.max_iter > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid leakage settings: {', '.join(bad)} (see LeakageConfig)")


# --- features: the correct table, and the leaky compilations of the same specs ----------------


def _leaky_aggregate(spec: FeatureSpec, frame: str) -> str:
    col = {Agg.COUNT: "1", Agg.TIME_SINCE_LAST: "ts"}.get(spec.agg, spec.column)
    v = f"CASE WHEN {spec.where.sql()} THEN {col} END" if spec.where else str(col)
    window = f"(PARTITION BY {spec.entity.key} ORDER BY ts {frame.format(w=spec.window_ms)})"
    return scalar_aggregate_sql(spec, v, window)


def leaky_training_sql(source: str, variant: str, features: Sequence[FeatureSpec]) -> str:
    """The scalar ``features`` of every event of ``source`` over a WRONG (leaky) window frame.

    Deliberately not the production compiler (``features/batch_sql.py``): the lab shows what a
    frame mistake does, it must never be used to serve.
    """
    frame = LEAKY_FRAMES[variant]
    cols = ",\n  ".join(f"{_leaky_aggregate(f, frame)} AS {f.name}" for f in features)
    return f"SELECT event_id,\n  {cols}\nFROM {source} ORDER BY event_id"


def feature_table(events: pa.Table, variant: str, features: Sequence[FeatureSpec]) -> pa.Table:
    """One row per event (ordered by ``event_id``): ``event_id`` and the features of ``variant``."""
    # No progress bar: DuckDB draws it on stdout, which `--json` keeps for the one JSON object.
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if variant == "correct":
        table = BatchFeatures(events, con=con, features=tuple(features)).training_table()
        return table.select(["event_id", *(f.name for f in features)])
    con.register("_events_src", events)
    return con.sql(leaky_training_sql("_events_src", variant, features)).to_arrow_table()


def matrix(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """Features as float64 columns; nulls become NaN (the model handles missing values)."""
    cols = [pc.cast(table.column(n), pa.float64()).to_numpy(zero_copy_only=False) for n in names]
    return np.column_stack(cols) if cols else np.empty((table.num_rows, 0))


# --- model and metrics -----------------------------------------------------------------------


def make_estimator(seed: int, max_iter: int = 150) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=15,
                                          l2_regularization=1.0, early_stopping=False,
                                          random_state=seed)


def aucs(y: np.ndarray, score: np.ndarray) -> dict[str, float | int]:
    """``auc_pr`` (average precision) and ``auc_roc``; NaN when one class is absent."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = int(y.sum())
    out: dict[str, float | int] = {"rows": int(y.size), "positives": positives}
    if positives == 0 or positives == y.size:
        out.update(auc_pr=float("nan"), auc_roc=float("nan"))
    else:
        out.update(auc_pr=float(average_precision_score(y, score)),
                   auc_roc=float(roc_auc_score(y, score)))
    return out


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices (rows ordered by event_id)
    test: np.ndarray


def make_splits(ts: np.ndarray, early: np.ndarray, test_fraction: float, seed: int) -> dict[str, Split]:
    """``random``: shuffled early rows; ``time``: the last ``test_fraction`` of early event time."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(early)
    n_test = max(1, round(len(early) * test_fraction))
    by_time = early[np.argsort(ts[early], kind="stable")]
    return {
        "random": Split(np.sort(shuffled[n_test:]), np.sort(shuffled[:n_test])),
        "time": Split(by_time[:-n_test], by_time[-n_test:]),
    }


def _column_scorer(features: np.ndarray, col: int) -> Callable[[np.ndarray], np.ndarray]:
    """A rule baseline: the score is one feature's value (missing counts as 0)."""
    return lambda rows: np.nan_to_num(features[rows, col])


def run_leakage(cfg: LeakageConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Every figure of the lab (and, under ``_estimator``, the model to serve)."""
    import sklearn.ensemble  # noqa: F401  (loads OpenMP first: the limit only reaches loaded libraries)
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: as fast as two on these sizes when idle, and far faster on a busy
    # machine (gradient boosting's threads spin-wait when they share cores).
    with threadpool_limits(1):
        return _run(cfg, progress or (lambda _m: None))


def _run(cfg: LeakageConfig, say: Progress) -> dict[str, Any]:
    t0 = time.perf_counter()
    events = generate_table(GeneratorConfig(events=cfg.events, seed=cfg.seed, rate=cfg.rate,
                                             fraud_bursts=cfg.fraud_bursts))
    specs = model_features()
    names = [f.name for f in specs]
    order = pc.sort_indices(events, [("event_id", "ascending")])
    events = events.take(order)
    y = events.column("is_fraud").to_numpy(zero_copy_only=False).astype(np.int8)
    ts = events.column("ts").to_numpy()

    say("features: correct (batch SQL) and the leaky frames")
    x: dict[str, np.ndarray] = {}
    for variant in VARIANTS:
        table = feature_table(events, variant, specs)
        if not np.array_equal(table.column("event_id").to_numpy(), events.column("event_id").to_numpy()):
            raise AssertionError(f"{variant}: feature rows are not the events, in order")
        x[variant] = matrix(table, names)

    cut_ts = int(np.quantile(ts, 1 - cfg.holdout_fraction))
    early = np.flatnonzero(ts < cut_ts)
    later = np.flatnonzero(ts >= cut_ts)
    splits = make_splits(ts, early, cfg.test_fraction, cfg.seed)

    runs: dict[str, Any] = {}
    models: dict[tuple[str, str], Any] = {}
    for split_name, split in splits.items():
        for variant in VARIANTS:
            say(f"train: {variant} features, {split_name} split")
            model = make_estimator(cfg.seed, cfg.max_iter)
            model.fit(x[variant][split.train], y[split.train])
            models[(split_name, variant)] = model
            offline = aucs(y[split.test], model.predict_proba(x[variant][split.test])[:, 1])
            later_m = aucs(y[later], model.predict_proba(x["correct"][later])[:, 1])
            runs[f"{variant}/{split_name}"] = {
                "variant": variant, "split": split_name,
                "train_rows": int(split.train.size), "train_positives": int(y[split.train].sum()),
                "offline": offline, "later": later_m,
                # the flat keys the brief names: offline figures, and the later-period ones
                "auc_pr": offline["auc_pr"], "auc_roc": offline["auc_roc"],
                "later_auc_pr": later_m["auc_pr"], "later_auc_roc": later_m["auc_roc"],
            }

    test_time = splits["time"].test
    baselines: dict[str, Any] = {}
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "zero_rule": lambda rows: np.zeros(rows.size)}
    for feat in HEURISTIC_FEATURES:
        col = names.index(feat)
        scorers[f"heuristic_{feat}"] = _column_scorer(x["correct"], col)
    for name, scorer in scorers.items():
        offline = aucs(y[test_time], scorer(test_time))
        later_m = aucs(y[later], scorer(later))
        baselines[name] = {"offline": offline, "later": later_m, "auc_pr": offline["auc_pr"],
                           "auc_roc": offline["auc_roc"], "later_auc_pr": later_m["auc_pr"],
                           "later_auc_roc": later_m["auc_roc"]}

    # The model to serve: correct features, trained on the whole early period (the time split's
    # choice of settings), so nothing from the later period was seen.
    say("train: the served model (correct features, whole early period)")
    served = make_estimator(cfg.seed, cfg.max_iter)
    served.fit(x["correct"][early], y[early])
    served_later = aucs(y[later], served.predict_proba(x["correct"][later])[:, 1])

    return {
        "config": asdict(cfg),
        "events": int(events.num_rows), "positives": int(y.sum()),
        "positive_rate": float(y.mean()),
        "features": names,
        "periods": {"early_rows": int(early.size), "later_rows": int(later.size),
                    "later_positives": int(y[later].sum()), "cut_ts": cut_ts,
                    "early_ts": [int(ts[early].min()), int(ts[early].max())],
                    "later_ts": [int(ts[later].min()), int(ts[later].max())]},
        "runs": runs,
        "baselines": baselines,
        "served_model": {"later": served_later, "train_rows": int(early.size)},
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "_estimator": served,
    }


def train_model(events: pa.Table, seed: int, max_iter: int = 150, version: str | None = None
                ) -> FraudModel:
    """A servable model fitted on every event of ``events`` with the correct features (tests, benches)."""
    import sklearn.ensemble  # noqa: F401  (loaded before the thread limit, see run_leakage)
    from threadpoolctl import threadpool_limits

    specs = model_features()
    names = [f.name for f in specs]
    events = events.take(pc.sort_indices(events, [("event_id", "ascending")]))
    x = matrix(feature_table(events, "correct", specs), names)
    y = events.column("is_fraud").to_numpy(zero_copy_only=False).astype(np.int8)
    with threadpool_limits(1):
        est = make_estimator(seed, max_iter)
        est.fit(x, y)
    return FraudModel(est, tuple(names), version or f"hgb-e{events.num_rows}-s{seed}",
                      {f.name: fingerprint(f) for f in specs}, {"trained_by": "train_model"})


def served_model(doc: dict[str, Any]) -> FraudModel:
    """The run's serving model with its feature list, definitions and a version."""
    cfg = doc["config"]
    specs = {f.name: f for f in FEATURES}
    version = f"hgb-e{cfg['events']}-s{cfg['seed']}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    return FraudModel(
        estimator=doc["_estimator"], features=tuple(doc["features"]), version=version,
        fingerprints={n: fingerprint(specs[n]) for n in doc["features"]},
        metadata={"trained_by": "playground train leakage", "config": cfg,
                  "later_auc_pr": doc["served_model"]["later"]["auc_pr"],
                  "later_auc_roc": doc["served_model"]["later"]["auc_roc"]})


def save_served_model(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    model = served_model(doc)
    save_model(model, path)
    return {"path": str(path), "version": model.version, "features": list(model.features)}


# --- reporting -------------------------------------------------------------------------------


def leak_verdicts(doc: dict[str, Any]) -> dict[str, Any]:
    """For each leaky variant and split: does it look better offline, and does that hold later?"""
    out = {}
    runs = doc["runs"]
    for split in SPLITS:
        ok = runs[f"correct/{split}"]
        for variant in VARIANTS[1:]:
            lk = runs[f"{variant}/{split}"]
            out[f"{variant}/{split}"] = {
                "offline_auc_pr_gain": lk["auc_pr"] - ok["auc_pr"],
                "later_auc_pr_gain": lk["later_auc_pr"] - ok["later_auc_pr"],
                "offline_better": lk["auc_pr"] > ok["auc_pr"],
                "later_not_better": lk["later_auc_pr"] <= ok["later_auc_pr"],
            }
    return out


def takeaway(doc: dict[str, Any]) -> str:
    r = doc["runs"]
    ok_t, ok_r = r["correct/time"], r["correct/random"]
    fut = r["leaky_future/time"]
    slf = r["leaky_self/time"]
    heur = {f: doc["baselines"][f"heuristic_{f}"]["later_auc_pr"] for f in HEURISTIC_FEATURES}
    zero = doc["baselines"]["zero_rule"]
    v = leak_verdicts(doc)
    held = [k for k, x in v.items() if x["offline_better"] and x["later_not_better"]]
    return (
        f"On {doc['events']:,} events ({doc['positive_rate']:.2%} fraud), the correct features "
        f"score AUC-PR {ok_t['auc_pr']:.3f} offline on a time split but {ok_r['auc_pr']:.3f} on a "
        f"random split, and {ok_t['later_auc_pr']:.3f} on the later period. "
        f"With future events in the window the offline AUC-PR is {fut['auc_pr']:.3f} "
        f"({fut['auc_pr'] - ok_t['auc_pr']:+.3f}) yet {fut['later_auc_pr']:.3f} later "
        f"({fut['later_auc_pr'] - ok_t['later_auc_pr']:+.3f} against correct); with the event "
        f"itself in the window, {slf['auc_pr']:.3f} offline and {slf['later_auc_pr']:.3f} later. "
        f"Leaky variants that looked better offline and were not better later: {len(held)} of "
        f"{len(v)} ({', '.join(held) or 'none'}). Baselines later (AUC-PR): zero rule "
        f"{zero['later_auc_pr']:.3f}, "
        + ", ".join(f"'{f}' {a:.3f}" for f, a in heur.items()) + "."
    )


def table_markdown(doc: dict[str, Any]) -> str:
    headers = ["model", "features", "split", "offline AUC-PR", "offline AUC-ROC",
               "later AUC-PR", "later AUC-ROC"]
    rows: list[list[Any]] = []
    for run in doc["runs"].values():
        rows.append(["HGB", run["variant"], run["split"], run["auc_pr"], run["auc_roc"],
                     run["later_auc_pr"], run["later_auc_roc"]])
    for name, b in doc["baselines"].items():
        rows.append([name, "correct", "time", b["auc_pr"], b["auc_roc"],
                     b["later_auc_pr"], b["later_auc_roc"]])
    return markdown_table(headers, rows)


def chart(doc: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(10.0, 4.8))
    for k, split in enumerate(SPLITS, start=1):
        ax = fig.add_subplot(1, 2, k)
        groups = list(VARIANTS)
        off = [doc["runs"][f"{v}/{split}"]["auc_pr"] for v in groups]
        lat = [doc["runs"][f"{v}/{split}"]["later_auc_pr"] for v in groups]
        xs = np.arange(len(groups))
        ax.bar(xs - 0.2, off, 0.4, label="offline (same features)")
        ax.bar(xs + 0.2, lat, 0.4, label="later period (correct features)")
        styles = iter([("grey", ":"), ("k", "--"), ("tab:red", "-."), ("tab:green", "--")])
        for name, b in doc["baselines"].items():
            color, ls = next(styles)
            ax.axhline(b["later_auc_pr"], ls=ls, lw=1.2, color=color, label=f"{name} (later)")
        ax.set_xticks(xs, groups)
        ax.set_ylim(0, 1.35)  # room for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("AUC-PR (average precision)")
        ax.set_title(f"{split} split")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper center", ncol=2)
    fig.suptitle("Leakage: offline AUC vs the later period")
    return fig


def finite(value: Any) -> Any:
    """NaN (an AUC over a period without both classes) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def public_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The run without the fitted estimator, with the verdicts; JSON-safe (NaN -> null)."""
    pub = {k: v for k, v in doc.items() if not k.startswith("_")}
    pub["verdicts"] = leak_verdicts(doc)
    out: dict[str, Any] = finite(pub)
    return out


def write_leakage_results(doc: dict[str, Any], results_dir: Path) -> dict[str, Path]:
    pub = public_doc(doc)
    return write_results(
        "leakage", results_dir, title="Splits and leakage: offline AUC vs a later period",
        parameters=pub["config"], data={k: v for k, v in pub.items() if k != "config"},
        table_md=table_markdown(doc), takeaway=takeaway(doc), chart=lambda: chart(doc))
