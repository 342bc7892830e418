"""The sampling lab: each estimator checked against what it promises, on fixed seeds.

Statistical checks use fixed seeds (deterministic: the same draws every run) and a stated
level or tolerance; each has a counterpart that must fail it (a biased reservoir, the naive
estimate), so the check can tell good from bad.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from scipy.stats import chisquare
from typer.testing import CliRunner

from dataflow_playground.app.train import sampling as lab
from dataflow_playground.app.train.sampling_cli import JSON_KEYS, command
from dataflow_playground.producers.generator import GeneratorConfig, generate_table

# Significance level of the chi-square uniformity tests. The seeds are fixed, so a run is
# deterministic; the level says how unlikely the observed counts are under a uniform sampler.
ALPHA = 0.001


@pytest.fixture(scope="module")
def pop() -> lab.Population:
    return lab.Population.from_table(generate_table(GeneratorConfig(events=50_000, seed=42)))


# --- reservoir --------------------------------------------------------------------------------


def _biased_reservoir(stream: range, k: int, rng: random.Random) -> list[int]:
    """Algorithm R with an off-by-one (replaces with probability k/(i+2), not k/(i+1))."""
    out: list[int] = []
    for i, x in enumerate(stream):
        if i < k:
            out.append(x)
        elif rng.random() < k / (i + 2):
            out[rng.randrange(k)] = x
    return out


def _inclusion_counts(samples: list[list[int]], n: int) -> np.ndarray:
    counts = np.zeros(n)
    for s in samples:
        counts[s] += 1
    return counts


def test_reservoir_includes_every_item_uniformly_chi_square() -> None:
    n, k, repeats = 20, 5, 4_000
    rngs = [random.Random(1_000 + r) for r in range(repeats)]
    samples = lab.reservoir_samples(range(n), k, rngs)  # one pass feeds all 4,000 reservoirs
    assert all(len(s) == k == len(set(s)) for s in samples)
    counts = _inclusion_counts(samples, n)
    assert chisquare(counts).pvalue >= ALPHA, counts
    # The same test rejects a reservoir with an off-by-one in its replacement probability.
    biased = [_biased_reservoir(range(n), k, random.Random(1_000 + r)) for r in range(repeats)]
    assert chisquare(_inclusion_counts(biased, n)).pvalue < ALPHA


def test_reservoir_draws_every_subset_equally_often_chi_square() -> None:
    n, k, repeats = 6, 2, 6_000  # 15 subsets, 400 expected each
    subsets = {s: 0 for s in itertools.combinations(range(n), k)}
    for r in range(repeats):
        subsets[tuple(sorted(lab.reservoir_sample(iter(range(n)), k, random.Random(r))))] += 1
    assert chisquare(list(subsets.values())).pvalue >= ALPHA, subsets


def test_reservoir_reads_once_and_never_holds_more_than_k() -> None:
    n, k = 10_000, 50
    reservoirs = [lab.Reservoir[int](k, random.Random(s)) for s in range(3)]
    pulled = 0

    def stream() -> Iterator[int]:
        nonlocal pulled
        for i in range(n):
            assert all(len(r.items) <= k for r in reservoirs)
            pulled += 1
            yield i

    lab.drive_reservoirs(stream(), reservoirs)
    assert pulled == n  # one pass, to the end, nothing read twice
    assert all(r.peak == k and len(set(r.items)) == k for r in reservoirs)
    assert lab.reservoir_sample(range(3), 10, random.Random(0)) == [0, 1, 2]  # short stream: all


# --- stratified ---------------------------------------------------------------------------------


def test_largest_remainder_is_exact_and_rounds_each_quota_down_or_up() -> None:
    assert lab.largest_remainder(2, [1, 1, 1]).tolist() == [1, 1, 0]
    assert lab.largest_remainder(10, [0.55, 0.3, 0.15]).tolist() == [6, 3, 1]
    rng = np.random.default_rng(7)
    for _ in range(200):
        w = rng.integers(0, 1_000, size=rng.integers(1, 12)) + 1
        total = int(rng.integers(0, 5_000))
        got = lab.largest_remainder(total, w)
        quota = total * w / w.sum()
        assert got.sum() == total
        assert np.all((got == np.floor(quota)) | (got == np.ceil(quota)))


@pytest.mark.parametrize("column", ["is_fraud", "country"])
def test_stratified_sample_has_exact_proportional_strata(pop: lab.Population, column: str) -> None:
    strata = pop.is_fraud.astype(np.int64) if column == "is_fraud" else pop.country
    k = 1_000
    sizes = np.bincount(strata)
    expected = lab.largest_remainder(k, sizes)
    for seed in range(5):
        draw = lab.stratified_sample(strata, k, np.random.default_rng(seed))
        assert len(draw.idx) == len(np.unique(draw.idx)) == k
        got = np.bincount(strata[draw.idx], minlength=len(sizes))
        assert got.tolist() == expected.tolist()
        assert np.all(np.abs(got - k * sizes / sizes.sum()) < 1)
    # Stratified on the label, the fraud-rate estimate is the truth, whatever the draw.
    if column == "is_fraud":
        est = pop.estimate(draw.idx, 1.0 / draw.pi)["fraud_rate"]
        assert est == pytest.approx(pop.truth()["fraud_rate"], rel=1e-12)


# --- weighted (PPS) -----------------------------------------------------------------------------


def test_weighted_inclusion_probabilities_match_their_targets() -> None:
    rng = np.random.default_rng(3)
    size = rng.lognormal(0, 1.5, size=200)
    k, repeats = 20, 4_000
    pi = lab.inclusion_probabilities(size, k)
    assert pi.sum() == pytest.approx(k) and pi.max() == 1.0 and (pi == 1.0).sum() >= 1
    free = pi < 1
    ratio = pi[free] / size[free]
    assert np.allclose(ratio, ratio[0])  # proportional to size below the cap
    hits = np.zeros(len(size))
    for r in range(repeats):
        idx = lab.systematic_pps(pi, np.random.default_rng(100 + r))
        assert len(idx) == len(np.unique(idx)) == k
        hits[idx] += 1
    empirical = hits / repeats
    # Tolerance: 4.5 binomial standard errors per unit (200 units, deterministic seeds).
    tol = 4.5 * np.sqrt(pi * (1 - pi) / repeats) + 1e-12
    assert np.all(np.abs(empirical - pi) <= tol), np.max(np.abs(empirical - pi) / tol)


def test_horvitz_thompson_corrects_the_fraud_upweighted_sample(pop: lab.Population) -> None:
    k, repeats = 1_000, 60
    pi = lab.inclusion_probabilities(np.where(pop.is_fraud > 0, lab.FRAUD_UPWEIGHT, 1.0), k)
    truth = pop.truth()["fraud_rate"]
    ht, naive, hits = [], [], np.zeros(pop.n)
    for r in range(repeats):
        idx = lab.systematic_pps(pi, np.random.default_rng(r))
        hits[idx] += 1
        ht.append(pop.estimate(idx, 1.0 / pi[idx])["fraud_rate"])
        naive.append(pop.estimate(idx)["fraud_rate"])
    fraud = pop.is_fraud > 0
    # Group means of the drawn frequencies within 5 % of the target pi (fraud pi = 10x legit).
    assert hits[fraud].mean() / repeats == pytest.approx(pi[fraud].mean(), rel=0.05)
    assert hits[~fraud].mean() / repeats == pytest.approx(pi[~fraud].mean(), rel=0.05)
    assert pi[fraud][0] == pytest.approx(lab.FRAUD_UPWEIGHT * pi[~fraud][0])
    assert abs(np.mean(ht) - truth) < 0.1 * truth
    assert abs(np.mean(naive) - truth) > 3 * truth


# --- importance sampling ------------------------------------------------------------------------


def test_importance_weights_reach_the_target_truth_and_the_naive_estimate_does_not(
        pop: lab.Population) -> None:
    k, repeats = 5_000, 30
    target = pop.target_truth()
    source = pop.truth()
    assert target["fraud_rate"] > 2 * source["fraud_rate"]  # the target really differs
    w = pop.importance_weights()
    assert np.sum(w) / pop.n == pytest.approx(1.0)  # p/q averages to 1 under the source
    weighted, naive = [], []
    for r in range(repeats):
        idx = lab.simple_random_sample(pop.n, k, np.random.default_rng(r))
        weighted.append(pop.estimate(idx, w[idx] * pop.n / k))
        naive.append(pop.estimate(idx))
    for stat, tol in (("fraud_rate", 0.005), ("mean_amount", 5.0)):
        est = np.mean([e[stat] for e in weighted])
        off = np.mean([e[stat] for e in naive])
        assert abs(est - target[stat]) < tol, (stat, est, target[stat])
        assert abs(off - target[stat]) > 4 * tol, (stat, off, target[stat])


# --- non-probability samples --------------------------------------------------------------------


@pytest.mark.parametrize("data_seed", [42, 1, 2])
def test_convenience_sample_of_time_ordered_events_is_biased(data_seed: int) -> None:
    # Fraud comes in bursts: the first k events either hold one (far too much fraud) or not
    # (only the background rate, far too little). Random samples of the same size are close.
    p = lab.Population.from_table(generate_table(GeneratorConfig(events=200_000, seed=data_seed)))
    k, truth = 2_000, p.truth()["fraud_rate"]
    first = p.estimate(np.arange(k))["fraud_rate"]
    assert abs(first - truth) > 0.5 * truth, (first, truth)
    srs = [p.estimate(lab.simple_random_sample(p.n, k, np.random.default_rng(s)))["fraud_rate"]
           for s in range(20)]
    assert abs(np.mean(srs) - truth) < 0.15 * truth


def test_quota_sample_fills_each_country_with_the_first_events(pop: lab.Population) -> None:
    k = 1_000
    idx = lab.quota_sample(pop.country, k)
    quotas = lab.largest_remainder(k, np.bincount(pop.country))
    assert np.bincount(pop.country[idx], minlength=len(quotas)).tolist() == quotas.tolist()
    for c, q in enumerate(quotas):
        assert pop.country[idx][pop.country[idx] == c].size == q
        assert set(idx[pop.country[idx] == c]) == set(np.flatnonzero(pop.country == c)[:q])


# --- the experiment, its report and its command -------------------------------------------------


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return lab.run_sampling(lab.SamplingConfig(events=20_000, seeds=8, sample_size=500))


def test_run_reports_every_method_and_statistic(doc: dict[str, Any]) -> None:
    assert set(doc["methods"]) == set(lab.METHODS)
    assert doc["reservoir"]["source"] == "memory" and doc["reservoir"]["consumed"] == 20_000
    for name, m in doc["methods"].items():
        for stat in lab.STATISTICS:
            assert set(m[stat]) >= {"truth", "mean", "bias", "std", "rmse"}, name
        if m["probability_sample"]:
            assert m["runs"] == 8
    assert doc["methods"]["convenience"]["fraud_rate"]["std"] == 0.0
    assert doc["methods"]["stratified_country"]["country_share"]["std"] == pytest.approx(0, abs=1e-12)
    assert doc["methods"]["quota"]["country_share"]["bias"] == pytest.approx(0, abs=1e-3)
    assert doc["methods"]["importance"]["fraud_rate"]["truth"] == doc["target_truth"]["fraud_rate"]


def test_takeaway_is_computed_from_the_numbers(doc: dict[str, Any]) -> None:
    text = lab.takeaway(doc)
    conv = doc["methods"]["convenience"]["fraud_rate"]
    assert f"{conv['mean']:.2%}" in text
    changed = json.loads(json.dumps(doc))
    changed["methods"]["convenience"]["fraud_rate"]["mean"] = 0.4321
    assert "43.21%" in lab.takeaway(changed) and "43.21%" not in text


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(command)
    return app


def test_cli_json_prints_one_object_with_the_documented_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), ["--events", "5000", "--seeds", "3", "--sample-size", "200",
                                         "--results-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(out, dict) and set(out) == set(JSON_KEYS)
    assert out["reservoir"]["source"] == "memory"
    assert set(out["methods"]) == set(lab.METHODS)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"sampling.{ext}").stat().st_size > 0
    assert out["takeaway"] in (tmp_path / "sampling.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--events", "0"], "--events"),
    (["--seeds", "-3"], "--seeds"),
    (["--sample-size", "0"], "--sample-size"),
    (["--events", "100", "--sample-size", "101"], "larger than the data"),
])
def test_cli_bad_arguments_are_clear_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli(), [*args, "--results-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Invalid value" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "sampling.json").exists()


def test_config_refuses_what_the_cli_refuses() -> None:
    with pytest.raises(lab.SamplingError, match="larger than"):
        lab.SamplingConfig(events=10, sample_size=11)
    with pytest.raises(lab.SamplingError, match="seeds"):
        lab.SamplingConfig(seeds=0)
    assert Counter(lab.largest_remainder(5, [1.0]).tolist()) == Counter([5])
