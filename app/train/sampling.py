"""Sampling the training data (book ch. 4): which samples estimate what, with what error.

One fixed population (the seeded events of ``producers/generator.py``, time-ordered, fraud
~1.7 % and bursty) is sampled again and again, ``seeds`` times per method, ``k`` events each.
For three statistics (fraud rate, mean amount, share of the most common country) every method
gets its bias (mean estimate minus the truth) and its spread (standard deviation over the
seeds). The population is fixed and only the sampler's randomness varies (design-based), so a
deterministic method (convenience, quota) has no spread at all: its error is all bias.

Methods, all without replacement, all through one estimator (:meth:`Population.estimate`):

- ``srs``: simple random sampling, every event with probability ``k / N``.
- ``stratified_fraud`` / ``stratified_country``: proportional allocation, stratum sizes made
  exact by largest-remainder rounding, SRS inside each stratum; estimate ``sum_h N_h/N ybar_h``.
- ``weighted_amount`` / ``weighted_fraud``: inclusion probability proportional to a size
  (the amount; or ``FRAUD_UPWEIGHT`` for a fraud event and 1 otherwise), units whose
  probability would exceed 1 taken with certainty, drawn by systematic PPS over a random order
  (fixed size ``k``, inclusion probabilities exactly the targets). Estimated with
  Horvitz-Thompson, ``(1/N) sum y_i / pi_i``: unbiased. ``weighted_fraud_uncorrected`` is the
  same sample averaged without the weights, the mistake the correction exists for.
- ``reservoir``: Algorithm L in ONE pass over a stream (the Kafka topic when a broker is given,
  else the in-memory events in arrival order), ``O(k)`` memory per reservoir: every seed's
  reservoir is fed from the same single pass.
- ``importance``: a *target* distribution that differs from the source in the mix of amount
  bands (``TARGET_BAND_MIX``: a high-ticket segment). An SRS of the source, weighted
  ``p(band) / q(band)``, estimates the statistics under the target (``sum w_i y_i / k``,
  unbiased), compared with the truth computed under the target; ``importance_naive`` is the
  same sample unweighted, against the same target truth.
- ``convenience``: the first ``k`` events. ``quota``: the first events of each country until
  its proportional quota is filled. Non-probability samples: no inclusion probability, so no
  correction and no error bar from the sample itself.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import orjson
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.producers.generator import GeneratorConfig, encode_event, generate_table

T = TypeVar("T")

STATISTICS = ("fraud_rate", "mean_amount", "country_share")
# Amount bands (upper edges, generator amount units) for the importance-sampling target.
AMOUNT_BAND_EDGES = (10.0, 50.0, 200.0)
AMOUNT_BAND_NAMES = ("<10", "10-50", "50-200", ">=200")
# The target: a high-ticket segment (the source has about 16 / 57 / 25 / 3 %).
TARGET_BAND_MIX = (0.10, 0.40, 0.35, 0.15)
# Size measure of the fraud-upweighting weighted sample: a fraud event is this many times as
# likely to be included as a legitimate one.
FRAUD_UPWEIGHT = 10.0

# name -> (label in tables and charts, truth it is compared with, probability sample?)
METHODS: dict[str, tuple[str, str, bool]] = {
    "srs": ("simple random", "full data", True),
    "stratified_fraud": ("stratified by is_fraud", "full data", True),
    "stratified_country": ("stratified by country", "full data", True),
    "weighted_amount": ("weighted, pi ~ amount (HT)", "full data", True),
    "weighted_fraud": (f"weighted, fraud x{FRAUD_UPWEIGHT:g} (HT)", "full data", True),
    "weighted_fraud_uncorrected": (f"weighted, fraud x{FRAUD_UPWEIGHT:g}, no correction",
                                   "full data", True),
    "reservoir": ("reservoir (Algorithm L)", "full data", True),
    "importance": ("importance, p/q weights", "target mix", True),
    "importance_naive": ("source sample, unweighted", "target mix", True),
    "convenience": ("convenience (first k)", "full data", False),
    "quota": ("quota by country (first)", "full data", False),
}


class SamplingError(PlaygroundError):
    """A sampling run was asked for something it cannot do (e.g. more events than exist)."""


@dataclass(frozen=True)
class SamplingConfig:
    events: int = 200_000
    seeds: int = 50
    sample_size: int = 2_000
    data_seed: int = 42
    bootstrap: str | None = None  # a broker: the reservoir reads a Kafka topic
    topic: str | None = None  # that topic (default: a throwaway one, deleted afterwards)

    def __post_init__(self) -> None:
        for name in ("events", "seeds", "sample_size"):
            if getattr(self, name) < 1:
                raise SamplingError(f"{name.replace('_', '-')} must be at least 1, "
                                    f"got {getattr(self, name)}")
        if self.sample_size > self.events:
            raise SamplingError(
                f"sample size {self.sample_size:,} is larger than the {self.events:,} events: "
                "a sample without replacement cannot hold more events than the data has")


# --- the population and its one estimator --------------------------------------------------


@dataclass(frozen=True)
class Population:
    """The columns the lab needs, as numpy arrays in arrival order (row i = event_id i)."""

    is_fraud: np.ndarray  # float64 0/1
    amount: np.ndarray  # float64
    country: np.ndarray  # int codes into ``countries``
    countries: tuple[str, ...]
    top_country: int  # code of the most common country (the share statistic)
    band: np.ndarray  # int amount band 0..len(AMOUNT_BAND_NAMES)-1

    @classmethod
    def from_table(cls, table: pa.Table) -> Population:
        ids = table.column("event_id").to_numpy()
        if not np.array_equal(ids, np.arange(len(ids))):
            raise SamplingError("the lab expects event_id == row number (generate_table's events)")
        names, codes = np.unique(table.column("country").to_numpy(zero_copy_only=False),
                                 return_inverse=True)
        amount = table.column("amount").to_numpy().astype(np.float64)
        return cls(
            is_fraud=table.column("is_fraud").to_numpy(zero_copy_only=False).astype(np.float64),
            amount=amount, country=codes.astype(np.int64),
            countries=tuple(str(c) for c in names),
            top_country=int(np.bincount(codes).argmax()),
            band=np.digitize(amount, AMOUNT_BAND_EDGES).astype(np.int64))

    @property
    def n(self) -> int:
        return len(self.amount)

    @property
    def top_country_name(self) -> str:
        return self.countries[self.top_country]

    def _values(self) -> dict[str, np.ndarray]:
        return {"fraud_rate": self.is_fraud, "mean_amount": self.amount,
                "country_share": (self.country == self.top_country).astype(np.float64)}

    def truth(self) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self._values().items()}

    def band_shares(self) -> np.ndarray:
        return np.bincount(self.band, minlength=len(AMOUNT_BAND_NAMES)) / self.n

    def importance_weights(self, target: Sequence[float] = TARGET_BAND_MIX) -> np.ndarray:
        """``p(band) / q(band)`` of every event (q: the source's band shares)."""
        q = self.band_shares()
        if np.any((np.asarray(target) > 0) & (q == 0)):
            raise SamplingError("the target puts weight on an amount band the data never has")
        ratio = np.divide(np.asarray(target, dtype=np.float64), q, out=np.zeros_like(q), where=q > 0)
        return ratio[self.band]

    def target_truth(self, target: Sequence[float] = TARGET_BAND_MIX) -> dict[str, float]:
        """The statistics under the target: ``sum_b p(b) * mean(y | b)`` over the full data."""
        w = self.importance_weights(target)
        return {k: float(np.sum(w * v) / self.n) for k, v in self._values().items()}

    def estimate(self, idx: np.ndarray, expansion: np.ndarray | None = None) -> dict[str, float]:
        """The sample's estimates of the statistics.

        ``expansion`` None: the plain sample mean. Otherwise each sampled unit's weight in a
        Horvitz-Thompson mean ``(1/N) sum_i e_i y_i`` (``e_i = 1/pi_i`` for a probability
        sample; ``N/k * p/q`` for importance weights).
        """
        out = {}
        for k, v in self._values().items():
            y = v[idx]
            out[k] = float(y.mean()) if expansion is None else float(np.sum(expansion * y) / self.n)
        return out


# --- the sampling algorithms (pure, numpy) ---------------------------------------------------


def largest_remainder(total: int, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that add up to exactly ``total``.

    Each share is floored, then the units left over go to the largest remainders (ties to the
    lower index), so every count is its exact quota rounded down or up.
    """
    w = np.asarray(weights, dtype=np.float64)
    if total < 0 or w.size == 0 or np.any(w < 0) or w.sum() <= 0:
        raise SamplingError("largest_remainder needs total >= 0 and non-negative weights with a "
                            "positive sum")
    quotas = total * w / w.sum()
    counts = np.floor(quotas).astype(np.int64)
    left = total - int(counts.sum())
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:left]] += 1
    return counts


def simple_random_sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if not 0 < k <= n:
        raise SamplingError(f"cannot draw {k:,} of {n:,} without replacement")
    return rng.choice(n, size=k, replace=False)


@dataclass(frozen=True)
class Draw:
    idx: np.ndarray  # row numbers of the sample
    pi: np.ndarray  # their inclusion probabilities


def stratified_sample(strata: np.ndarray, k: int, rng: np.random.Generator) -> Draw:
    """Proportional allocation (largest remainder), SRS without replacement in each stratum."""
    sizes = np.bincount(strata)
    alloc = largest_remainder(k, sizes)
    parts, pis = [], []
    for h in np.flatnonzero(sizes):
        members = np.flatnonzero(strata == h)
        parts.append(rng.choice(members, size=int(alloc[h]), replace=False))
        pis.append(np.full(int(alloc[h]), alloc[h] / sizes[h]))
    return Draw(np.concatenate(parts), np.concatenate(pis))


def inclusion_probabilities(size: np.ndarray, k: int) -> np.ndarray:
    """``pi_i`` proportional to ``size_i``, summing to ``k``; units that would pass 1 get 1.

    The capping repeats until no unit's probability exceeds 1 (certainty units).
    """
    size = np.asarray(size, dtype=np.float64)
    if not 0 < k <= size.size:
        raise SamplingError(f"cannot draw {k:,} of {size.size:,} without replacement")
    if np.any(~np.isfinite(size)) or np.any(size <= 0):
        raise SamplingError("every size must be positive and finite (a zero size can never be "
                            "drawn, and Horvitz-Thompson needs every pi > 0)")
    certain = np.zeros(size.size, dtype=bool)
    while True:
        rest = ~certain
        pi = np.where(certain, 1.0, size * (k - certain.sum()) / size[rest].sum())
        over = rest & (pi >= 1.0)
        if not over.any():
            return pi
        certain |= over


def systematic_pps(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fixed-size sample with inclusion probabilities exactly ``pi`` (which sum to an integer).

    Certainty units (``pi == 1``) are taken; the others are put in a random order, laid end to
    end on a line (unit i spans ``pi_i``) and hit by the points ``u, u+1, u+2, ...`` with one
    uniform ``u``: a unit is hit with probability exactly its length, at most once.
    """
    certain = np.flatnonzero(pi >= 1.0)
    rest = np.flatnonzero(pi < 1.0)
    total = float(pi[rest].sum())
    m = round(total)
    if abs(total - m) > 1e-6 or np.any(pi < 0):
        raise SamplingError(f"inclusion probabilities must be >= 0 and sum to a whole sample "
                            f"size, got a sum of {total:.6f}")
    if m == 0:
        return certain
    order = rng.permutation(rest)
    edges = np.cumsum(pi[order])
    points = rng.random() + np.arange(m)
    hit = np.minimum(np.searchsorted(edges, points, side="right"), len(order) - 1)
    return np.concatenate([certain, order[hit]])


def quota_sample(groups: np.ndarray, k: int) -> np.ndarray:
    """The first events of each group (in arrival order) until its proportional quota is full."""
    quotas = largest_remainder(k, np.bincount(groups))
    return np.sort(np.concatenate([np.flatnonzero(groups == g)[:q] for g, q in enumerate(quotas)]))


# --- reservoir sampling: one pass, O(k) memory -----------------------------------------------


class Reservoir(Generic[T]):
    """Algorithm L (Li 1994): a uniform k-subset of a stream of unknown length.

    It never holds more than ``k`` items, and after the first ``k`` it only touches the items
    it will keep: the index of the next one (``next_index``) is drawn ahead, so a driver can
    skip the items in between without looking at them. ``peak`` records the most items it
    ever held (the memory bound, checked by the tests).
    """

    def __init__(self, k: int, rng: random.Random) -> None:
        if k < 1:
            raise SamplingError(f"a reservoir needs k >= 1, got {k}")
        self.k = k
        self.items: list[T] = []
        self.peak = 0
        self.next_index = 0  # stream index (0-based) of the next item to take
        self._rng = rng
        self._w = 1.0

    def _u(self) -> float:
        return 1.0 - self._rng.random()  # in (0, 1]: log is finite

    def _schedule(self) -> None:
        self._w *= math.exp(math.log(self._u()) / self.k)
        gap = math.floor(math.log(self._u()) / math.log1p(-self._w)) if self._w < 1.0 else 0
        self.next_index += gap + 1

    def take(self, item: T) -> None:
        """Take the item at ``next_index`` (the driver guarantees the index)."""
        if len(self.items) < self.k:
            self.items.append(item)
            if len(self.items) < self.k:
                self.next_index += 1
            else:
                self.next_index = self.k - 1
                self._schedule()
        else:
            self.items[self._rng.randrange(self.k)] = item
            self._schedule()
        self.peak = max(self.peak, len(self.items))


_END = object()


def drive_reservoirs(stream: Iterable[T], reservoirs: Sequence[Reservoir[T]]) -> None:
    """Feed ONE pass over ``stream`` to every reservoir (each keeps its own uniform sample).

    The stream is read once, in order, and never stored; items no reservoir wants are skipped
    in C (``itertools.islice``), so the Python work is the items kept, about
    ``k (1 + ln(n / k))`` per reservoir.
    """
    heap = [(r.next_index, j) for j, r in enumerate(reservoirs)]
    heapq.heapify(heap)
    it = iter(stream)
    position = 0  # index of the item ``it`` yields next
    while heap:
        target = heap[0][0]
        item = next(itertools.islice(it, target - position, None), _END)
        if item is _END:
            return
        position = target + 1
        while heap and heap[0][0] == target:
            _, j = heapq.heappop(heap)
            reservoirs[j].take(item)  # type: ignore[arg-type]
            heapq.heappush(heap, (reservoirs[j].next_index, j))


def reservoir_samples(stream: Iterable[T], k: int, rngs: Sequence[random.Random]) -> list[list[T]]:
    """One pass over ``stream``, one Algorithm-L reservoir per rng (``O(k)`` memory each).

    A stream shorter than ``k`` gives every item.
    """
    reservoirs = [Reservoir[T](k, r) for r in rngs]
    drive_reservoirs(stream, reservoirs)
    return [r.items for r in reservoirs]


def reservoir_sample(stream: Iterable[T], k: int, rng: random.Random) -> list[T]:
    """A uniform sample of ``k`` items from one pass over any iterable (Algorithm L)."""
    return reservoir_samples(stream, k, [rng])[0]


# --- the Kafka side: a topic read once, to the end offsets it had when we started -------------


@dataclass
class TopicPass:
    """What one pass over a topic saw: records per partition, and the end offsets aimed for."""

    end_offsets: dict[int, int] = field(default_factory=dict)
    consumed: int = 0
    elapsed_s: float = 0.0


def kafka_records(bootstrap: str, topic: str, stats: TopicPass | None = None,
                  timeout_s: float = 120.0, max_poll_records: int = 2_000) -> Iterator[Any]:
    """Every record of ``topic`` once, from the beginning to the end offsets read at the start.

    A kafka-python consumer assigned to every partition (no group, nothing committed); it
    yields ``ConsumerRecord`` objects lazily, so a caller holds only what it keeps (the
    client's own fetch buffer is bounded by ``max_poll_records``). Records produced after the
    start are not read: the pass ends.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    stats = stats if stats is not None else TopicPass()
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 group_id=None, max_poll_records=max_poll_records,
                                 client_id="playground-sampling")
    except KafkaError as err:
        raise SamplingError(f"cannot connect a consumer to Kafka at {bootstrap}: {err}. "
                            "Is the broker up? Try 'playground up'.") from err
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise SamplingError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        stats.end_offsets = {tp.partition: off for tp, off in ends.items()}
        todo = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        start = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise SamplingError(f"reading {topic!r} to its end offsets took over {timeout_s:.0f} s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                if tp not in todo:
                    continue
                end = ends[tp]
                for rec in batch:
                    if rec.offset < end:
                        stats.consumed += 1
                        yield rec
                if consumer.position(tp) >= end:
                    todo.discard(tp)
                    consumer.pause(tp)
        stats.elapsed_s = time.perf_counter() - start
    finally:
        consumer.close()


def kafka_reservoir(bootstrap: str, topic: str, k: int, rngs: Sequence[random.Random],
                    stats: TopicPass | None = None) -> list[list[Any]]:
    """One pass over ``topic``, one reservoir of ``ConsumerRecord`` per rng (O(k) each)."""
    return reservoir_samples(kafka_records(bootstrap, topic, stats), k, rngs)


def _fill_topic(bootstrap: str, topic: str, table: pa.Table, created: bool) -> None:
    from dataflow_playground.core import kafka_admin
    from dataflow_playground.producers.to_kafka import make_producer, produce

    if not created and kafka_admin.topic_size(bootstrap, topic) > 0:
        raise SamplingError(
            f"topic {topic!r} already holds records; the lab compares the reservoir with the "
            "truth of the events it produces, so give an empty or new topic (or none: a "
            "throwaway one is made)")
    producer = make_producer(bootstrap)
    try:
        stats = produce(producer, topic, ((str(e["user_id"]).encode(), encode_event(e))
                                          for e in table.to_pylist()))
    finally:
        producer.close()
    if stats.failed:
        raise SamplingError(f"{stats.failed} of {stats.sent} events were not delivered to "
                            f"{topic!r}: {stats.errors}")


# --- the experiment --------------------------------------------------------------------------


def _rng(seed: int, method: str) -> np.random.Generator:
    return np.random.default_rng([seed, *method.encode()])


def _py_rng(seed: int) -> random.Random:
    return random.Random(int(np.random.SeedSequence([seed, 0x5E5]).generate_state(1)[0]))


def _summary(estimates: list[dict[str, float]], truth: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for stat in STATISTICS:
        e = np.array([x[stat] for x in estimates])
        bias = float(e.mean() - truth[stat])
        std = float(e.std(ddof=1)) if len(e) > 1 else 0.0
        out[stat] = {"truth": truth[stat], "mean": float(e.mean()), "bias": bias, "std": std,
                     "rmse": float(np.sqrt(np.mean((e - truth[stat]) ** 2))),
                     "relative_bias": bias / truth[stat] if truth[stat] else float("nan")}
    return out


def run_sampling(cfg: SamplingConfig, step: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Every method over ``cfg.seeds`` seeds; the figures, the raw estimates and the truths."""
    table = generate_table(GeneratorConfig(events=cfg.events, seed=cfg.data_seed))
    pop = Population.from_table(table)
    n, k, seeds = pop.n, cfg.sample_size, range(cfg.seeds)
    truth, target = pop.truth(), pop.target_truth()
    estimates: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    fraud_counts: dict[str, list[float]] = {m: [] for m in METHODS}
    sizes: dict[str, list[int]] = {m: [] for m in METHODS}

    def record(method: str, idx: np.ndarray, expansion: np.ndarray | None = None) -> None:
        estimates[method].append(pop.estimate(idx, expansion))
        fraud_counts[method].append(float(pop.is_fraud[idx].sum()))
        sizes[method].append(len(idx))

    pi_amount = inclusion_probabilities(pop.amount, k)
    pi_fraud = inclusion_probabilities(np.where(pop.is_fraud > 0, FRAUD_UPWEIGHT, 1.0), k)
    hits = {"weighted_amount": np.zeros(n), "weighted_fraud": np.zeros(n)}
    w_is = pop.importance_weights()

    step("probability samples")
    for s in seeds:
        record("srs", simple_random_sample(n, k, _rng(s, "srs")))
        for method, strata in (("stratified_fraud", pop.is_fraud.astype(np.int64)),
                               ("stratified_country", pop.country)):
            d = stratified_sample(strata, k, _rng(s, method))
            record(method, d.idx, 1.0 / d.pi)
        for method, pi in (("weighted_amount", pi_amount), ("weighted_fraud", pi_fraud)):
            idx = systematic_pps(pi, _rng(s, method))
            hits[method][idx] += 1
            record(method, idx, 1.0 / pi[idx])
            if method == "weighted_fraud":
                record("weighted_fraud_uncorrected", idx)
        idx = simple_random_sample(n, k, _rng(s, "importance"))
        record("importance", idx, w_is[idx] * n / k)
        record("importance_naive", idx)

    step("reservoir")
    rngs = [_py_rng(s) for s in seeds]
    reservoir: dict[str, Any]
    if cfg.bootstrap:
        reservoir = _kafka_reservoir_run(cfg, table, rngs)
        samples: list[list[int]] = reservoir.pop("samples")
    else:
        start = time.perf_counter()
        samples = reservoir_samples(iter(table.column("event_id").to_pylist()), k, rngs)
        reservoir = {"source": "memory", "passes": 1, "consumed": n,
                     "elapsed_s": time.perf_counter() - start}
    for sample in samples:
        record("reservoir", np.asarray(sample, dtype=np.int64))

    step("non-probability samples")
    record("convenience", np.arange(k))
    record("quota", quota_sample(pop.country, k))

    methods: dict[str, Any] = {}
    for m, (label, against, probability) in METHODS.items():
        methods[m] = {"label": label, "against": against, "probability_sample": probability,
                      "runs": len(estimates[m]),
                      "mean_fraud_count": float(np.mean(fraud_counts[m])),
                      "mean_sample_size": float(np.mean(sizes[m])),
                      **_summary(estimates[m], target if against == "target mix" else truth)}
    inclusion = {
        "weighted_amount": _inclusion_report(pi_amount, hits["weighted_amount"], cfg.seeds,
                                             {b: pop.band == i for i, b in enumerate(AMOUNT_BAND_NAMES)}),
        "weighted_fraud": _inclusion_report(pi_fraud, hits["weighted_fraud"], cfg.seeds,
                                            {"fraud": pop.is_fraud > 0, "legit": pop.is_fraud == 0}),
    }
    return {
        "events": n, "seeds": cfg.seeds, "sample_size": k, "data_seed": cfg.data_seed,
        "top_country": pop.top_country_name, "truth": truth, "target_truth": target,
        "importance_target": {"amount_bands": list(AMOUNT_BAND_NAMES),
                              "source_mix": [float(x) for x in pop.band_shares()],
                              "target_mix": list(TARGET_BAND_MIX)},
        "fraud_upweight": FRAUD_UPWEIGHT, "reservoir": reservoir,
        "methods": methods, "inclusion": inclusion,
        "estimates": {m: {stat: [e[stat] for e in estimates[m]] for stat in STATISTICS}
                      for m in METHODS},
    }


def _inclusion_report(pi: np.ndarray, hits: np.ndarray, seeds: int,
                      groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """Target inclusion probabilities, and how often each group's units were drawn."""
    return {
        "pi_min": float(pi.min()), "pi_max": float(pi.max()), "pi_sum": float(pi.sum()),
        "certainty_units": int((pi >= 1.0).sum()),
        "groups": {name: {"units": int(mask.sum()), "target_pi_mean": float(pi[mask].mean()),
                          "empirical_pi_mean": float(hits[mask].mean() / seeds)}
                   for name, mask in groups.items() if mask.any()},
    }


def _kafka_reservoir_run(cfg: SamplingConfig, table: pa.Table,
                         rngs: list[random.Random]) -> dict[str, Any]:
    from dataflow_playground.core import kafka_admin

    assert cfg.bootstrap is not None
    topic = cfg.topic or f"sampling-{uuid.uuid4().hex[:10]}"
    created = bool(kafka_admin.ensure_topics(cfg.bootstrap, [kafka_admin.TopicSpec(topic, 3)]))
    try:
        t0 = time.perf_counter()
        _fill_topic(cfg.bootstrap, topic, table, created)
        produce_s = time.perf_counter() - t0
        stats = TopicPass()
        records = kafka_reservoir(cfg.bootstrap, topic, cfg.sample_size, rngs, stats)
        samples = [[int(orjson.loads(r.value)["event_id"]) for r in rs] for rs in records]
    finally:
        if cfg.topic is None:
            kafka_admin.delete_topics(cfg.bootstrap, [topic])
    if stats.consumed != table.num_rows:
        raise SamplingError(f"the pass over {topic!r} read {stats.consumed:,} records, "
                            f"expected {table.num_rows:,}")
    return {"source": "kafka", "topic": topic, "topic_kept": cfg.topic is not None, "passes": 1,
            "consumed": stats.consumed, "elapsed_s": stats.elapsed_s, "produce_s": produce_s,
            "samples": samples}


# --- reporting -------------------------------------------------------------------------------


def _pp(x: float) -> str:
    return f"{x * 100:+.2f} pp"


def takeaway(doc: dict[str, Any]) -> str:
    m, truth, k = doc["methods"], doc["truth"], doc["sample_size"]
    fr = {name: v["fraud_rate"] for name, v in m.items()}
    full = [name for name, v in m.items() if v["against"] == "full data" and v["probability_sample"]
            and name != "weighted_fraud_uncorrected"]
    best = min(full, key=lambda name: fr[name]["rmse"])
    not_label = [name for name in full if name not in ("stratified_fraud", best)]
    second = min(not_label, key=lambda name: fr[name]["rmse"])
    conv, quota, srs = fr["convenience"], fr["quota"], fr["srs"]
    res = fr["reservoir"]
    wf, wfu = m["weighted_fraud"], fr["weighted_fraud_uncorrected"]
    imp, naive = fr["importance"], fr["importance_naive"]
    tgt = doc["target_truth"]["fraud_rate"]
    seeds = doc["seeds"]

    def unbiased(stat: dict[str, float]) -> bool:  # bias within 3 standard errors of the mean
        return abs(stat["bias"]) <= 3 * stat["std"] / math.sqrt(seeds) + 1e-12

    ht_word = "keeps it unbiased" if unbiased(wf["fraud_rate"]) else "leaves a bias"
    res_ratio = res["rmse"] / srs["rmse"] if srs["rmse"] else float("inf")
    res_word = "matches" if 2 / 3 <= res_ratio <= 3 / 2 else "does not match"
    return (
        f"Fraud rate ({truth['fraud_rate']:.2%} in {doc['events']:,} events), samples of {k:,} "
        f"over {doc['seeds']} seeds: {m[best]['label']} has the lowest error (RMSE "
        f"{fr[best]['rmse'] * 100:.3f} pp), then {m[second]['label']} "
        f"({fr[second]['rmse'] * 100:.3f} pp), against {srs['rmse'] * 100:.3f} pp for simple random "
        f"sampling. The convenience sample (first {k:,} events) says {conv['mean']:.2%}: "
        f"{_pp(conv['bias'])}, {conv['relative_bias']:+.0%} of the truth, the same every time; the "
        f"quota sample matches the country mix and still says {quota['mean']:.2%}. "
        f"Upweighting fraud x{doc['fraud_upweight']:g} puts {wf['mean_fraud_count']:.0f} fraud "
        f"events in a sample instead of {m['srs']['mean_fraud_count']:.0f}; Horvitz-Thompson {ht_word} "
        f"({_pp(wf['fraud_rate']['bias'])}) where the unweighted mean says "
        f"{wfu['mean']:.2%}. Under the high-ticket target mix (truth {tgt:.2%}) p/q weights give "
        f"{imp['mean']:.2%} ({_pp(imp['bias'])}), the unweighted source sample {naive['mean']:.2%} "
        f"({_pp(naive['bias'])}). The reservoir ({doc['reservoir']['source']}, one pass) {res_word} "
        f"simple random sampling: RMSE {res['rmse'] * 100:.3f} pp vs {srs['rmse'] * 100:.3f} pp."
    )


def _fmt(stat: str, x: float) -> str:
    return f"{x * 100:+.3f}" if stat != "mean_amount" else f"{x:+.2f}"


def table_markdown(doc: dict[str, Any]) -> str:
    headers = ["method", "against", "fraud rate bias (pp)", "± std (pp)", "mean amount bias",
               "± std", f"{doc['top_country']} share bias (pp)", "± std (pp)", "fraud events / sample"]
    rows = []
    for v in doc["methods"].values():
        row: list[Any] = [v["label"], v["against"]]
        for stat in STATISTICS:
            row += [_fmt(stat, v[stat]["bias"]), _fmt(stat, v[stat]["std"]).lstrip("+")]
        rows.append([*row, round(v["mean_fraud_count"], 1)])
    t, tt = doc["truth"], doc["target_truth"]
    truths = markdown_table(
        ["truth", "fraud rate", "mean amount", f"{doc['top_country']} share"],
        [["full data", f"{t['fraud_rate']:.4%}", f"{t['mean_amount']:.2f}", f"{t['country_share']:.2%}"],
         ["target mix", f"{tt['fraud_rate']:.4%}", f"{tt['mean_amount']:.2f}",
          f"{tt['country_share']:.2%}"]])
    it = doc["importance_target"]
    mix = ", ".join(f"{b}: {q:.1%} → {p:.0%}" for b, q, p in
                    zip(it["amount_bands"], it["source_mix"], it["target_mix"], strict=True))
    incl = ["", "Inclusion probabilities of the weighted samples (target vs drawn, mean per group):", ""]
    incl.append(markdown_table(
        ["sample", "group", "units", "target pi", "empirical"],
        [[name, g, gv["units"], f"{gv['target_pi_mean']:.5f}", f"{gv['empirical_pi_mean']:.5f}"]
         for name, r in doc["inclusion"].items() for g, gv in r["groups"].items()]))
    r = doc["reservoir"]
    where = (f"Kafka topic `{r['topic']}`, {r['consumed']:,} records in one pass ({r['elapsed_s']:.2f} s)"
             if r["source"] == "kafka" else
             f"the in-memory events in arrival order, one pass ({r['elapsed_s']:.2f} s); give "
             "`--bootstrap` to read a Kafka topic instead")
    return "\n".join([
        markdown_table(headers, rows), "",
        f"Bias = mean estimate − truth, std over {doc['seeds']} seeds; pp = percentage points; "
        "amounts in generator units. Convenience and quota are deterministic: no spread.", "",
        truths, "",
        f"Importance target: amount bands (source → target) {mix}.", "",
        f"Reservoir read: {where}.", *incl])


def chart(doc: dict[str, Any]) -> Figure:
    names = list(doc["methods"])
    methods = list(doc["methods"].values())
    labels = [v["label"] for v in methods]
    fig = Figure(figsize=(16, 0.42 * len(labels) + 2.2))
    titles = {"fraud_rate": ("fraud rate", "bias (percentage points)", 100.0),
              "mean_amount": ("mean amount", "bias (amount, generator units)", 1.0),
              "country_share": (f"share of {doc['top_country']}", "bias (percentage points)", 100.0)}
    y = np.arange(len(labels))
    for i, stat in enumerate(STATISTICS, start=1):
        ax = fig.add_subplot(1, len(STATISTICS), i)
        name, xlabel, scale = titles[stat]
        bias = np.array([v[stat]["bias"] for v in methods]) * scale
        std = np.array([v[stat]["std"] for v in methods]) * scale
        ax.barh(y, bias, xerr=std, color=[_color(m) for m in names], alpha=0.8, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, labels if i == 1 else [""] * len(labels))
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(f"{name} (truth {doc['truth'][stat] * scale:.3g}"
                     f"{' %' if scale == 100 else ''})")
        ax.grid(axis="x", alpha=0.3)
        for yy, b, s in zip(y, bias, std, strict=True):
            ax.annotate(f"{b:+.2f} ± {s:.2f}", (0, yy), xytext=(4, -9), textcoords="offset points",
                        fontsize="x-small", color="dimgray")
    fig.suptitle(f"Sampling methods: bias ± std over {doc['seeds']} seeds, k = {doc['sample_size']:,} "
                 f"of {doc['events']:,} events (importance rows: against the target mix)")
    # On an axes (not the figure), so the tight layout of the results contract makes room for it.
    fig.axes[1].legend(handles=[Patch(color=c, alpha=0.8, label=t) for t, c in LEGEND.items()],
                       loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1,
                       fontsize="small", frameon=False)
    return fig


# Chart colours: a probability sample with its weights, the same sample without them, and a
# non-probability sample.
LEGEND = {"probability sample, weighted as designed": "tab:blue",
          "probability sample, weights ignored": "tab:orange",
          "non-probability sample (no spread: deterministic)": "tab:red"}
_UNWEIGHTED = ("weighted_fraud_uncorrected", "importance_naive")


def _color(method: str) -> str:
    if method in _UNWEIGHTED:
        return LEGEND["probability sample, weights ignored"]
    if not METHODS[method][2]:
        return LEGEND["non-probability sample (no spread: deterministic)"]
    return LEGEND["probability sample, weighted as designed"]


def write_sampling_results(doc: dict[str, Any], results_dir: Path, cfg: SamplingConfig) -> dict[str, Path]:
    return write_results(
        "sampling", results_dir, title=f"Sampling {doc['sample_size']:,} of {doc['events']:,} payment events",
        parameters={"events": cfg.events, "seeds": cfg.seeds, "sample_size": cfg.sample_size,
                    "data_seed": cfg.data_seed, "reservoir_source": doc["reservoir"]["source"],
                    "fraud_upweight": FRAUD_UPWEIGHT, "target_band_mix": list(TARGET_BAND_MIX),
                    "amount_band_edges": list(AMOUNT_BAND_EDGES)},
        data=doc, table_md=table_markdown(doc), takeaway=takeaway(doc), chart=lambda: chart(doc))
