"""Serving the fraud model: prediction skew (batch vs stream features) and scoring latency.

Two measurements against a real stack, started here and stopped afterwards (only what this
run started is stopped):

1. **Prediction skew.** The parity lab (:func:`~dataflow_playground.app.parity_run.run_parity`)
   runs the batch SQL (point-in-time features, what the model is trained on) and a stream
   worker (what the service serves) on the same events. The model scores every event twice,
   once from each side's per-event values; the difference is the prediction skew. In order,
   stream == batch, so the scores are equal; with late events the stream's values at an
   event are not the point-in-time ones, and the scores move.
2. **Scoring latency.** Events are produced to the stack's topic, the stack's features worker
   serves their users and merchants (``GET /features`` answers for them), then ``POST /score``
   is called at a paced, open-loop rate over loopback with httpx. A request's latency is
   counted from the moment it was *due* (so a client or server falling behind shows up in the
   figures instead of silently lowering the offered load), to its answer.

If there is no model file yet, one is trained first with
:func:`~dataflow_playground.app.train.leakage.train_model` on seeded events and saved where
the service reads it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from matplotlib.figure import Figure
from rich.console import Console

from dataflow_playground.app import stack
from dataflow_playground.app.parity_run import ParityReport, run_parity
from dataflow_playground.app.results import markdown_table, write_results
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.model import FraudModel, ModelMissing, load_model, model_path, save_model
from dataflow_playground.features.online_store import event_time_frontier
from dataflow_playground.producers.generator import GeneratorConfig, generate_table, wire_records
from dataflow_playground.producers.to_kafka import make_producer, produce

SKEW_THRESHOLD = 0.01  # a score difference above this counts as "differs"
WARMUP_REQUESTS = 20  # untimed: the service loads the model on its first request
Say = Callable[[str], None]


class ServingError(PlaygroundError):
    """The serving lab could not measure what it was asked to."""


@dataclass(frozen=True)
class ServingConfig:
    events: int = 5_000  # per parity run
    seed: int = 42
    out_of_order: float = 0.05
    max_lateness_ms: int = 30_000
    rate: float = 200.0  # POST /score requests per second
    seconds: float = 10.0
    pool_events: int = 2_000  # events produced to the stack's topic, scored round-robin
    max_in_flight: int = 64  # bound on concurrent requests
    engine: str = "faust"
    train_events: int = 20_000  # if no model exists yet

    def __post_init__(self) -> None:
        checks = {"events": self.events >= 100, "out_of_order": 0 <= self.out_of_order <= 1,
                  "max_lateness_ms": self.max_lateness_ms >= 0, "rate": self.rate > 0,
                  "seconds": self.seconds > 0, "pool_events": self.pool_events >= 1,
                  "max_in_flight": self.max_in_flight >= 1, "train_events": self.train_events >= 1_000}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ServingError(f"invalid serving settings: {', '.join(bad)} (see ServingConfig)")

    @property
    def requests(self) -> int:
        return max(round(self.rate * self.seconds), 1)


# --- the model ---------------------------------------------------------------------------------


def ensure_model(settings: Settings, seed: int, train_events: int, say: Say) -> tuple[FraudModel, bool]:
    """The model the service scores with; trained and saved first if there is none. (model, trained?)"""
    path = model_path(settings)
    try:
        return load_model(path), False
    except ModelMissing:
        pass
    from dataflow_playground.app.train.leakage import LeakageConfig, train_model

    lk = LeakageConfig()
    say(f"no model at {path}: training one with train_model() on {train_events:,} seeded events "
        f"(seed {seed})")
    events = generate_table(GeneratorConfig(events=train_events, seed=seed, rate=lk.rate,
                                            fraud_bursts=lk.fraud_bursts))
    model = train_model(events, seed)
    save_model(model, path)
    return load_model(path), True


# --- 1. prediction skew --------------------------------------------------------------------------


def score_skew(model: FraudModel, batch_rows: Sequence[dict[str, Any]],
               stream_values: dict[int, dict[str, object]]) -> dict[str, Any]:
    """The model's scores from batch rows vs from the stream's values of the same events."""
    ids = [int(r["event_id"]) for r in batch_rows if int(r["event_id"]) in stream_values]
    by_id = {int(r["event_id"]): r for r in batch_rows}
    b = np.asarray(model.score_rows([model.row(by_id[i]) for i in ids]), dtype=np.float64)
    s = np.asarray(model.score_rows([model.row(stream_values[i]) for i in ids]), dtype=np.float64)
    diff = np.abs(b - s)
    n = int(diff.size)
    over = int(np.count_nonzero(diff > SKEW_THRESHOLD))
    worst = int(np.argmax(diff)) if n else -1
    return {
        "events": n,
        "missing_in_stream": len(batch_rows) - n,
        "mean_abs_diff": float(diff.mean()) if n else 0.0,
        "max_abs_diff": float(diff.max()) if n else 0.0,
        "p99_abs_diff": float(np.percentile(diff, 99)) if n else 0.0,
        "over_0_01": over,
        "share_over_0_01": over / n if n else 0.0,
        "mean_score_batch": float(b.mean()) if n else 0.0,
        "mean_score_stream": float(s.mean()) if n else 0.0,
        "worst": ({"event_id": ids[worst], "batch": float(b[worst]), "stream": float(s[worst])}
                  if n else None),
    }


def _skew_run(settings: Settings, cfg: ServingConfig, model: FraudModel, out_of_order: float,
              max_lateness_ms: int, ui: Console) -> dict[str, Any]:
    report: ParityReport = run_parity(settings, cfg.events, seed=cfg.seed, out_of_order=out_of_order,
                                      max_lateness_ms=max_lateness_ms, ui=ui, engine=cfg.engine)
    skew = score_skew(model, report.batch_rows, report.stream_values)
    c = report.counters
    skew.update({
        "out_of_order": out_of_order, "max_lateness_ms": max_lateness_ms,
        "feature_mismatches": sum(p.mismatches for p in report.per_event.values()),
        "late_accepted": int(c.get("late_accepted", 0)), "late_dropped": int(c.get("late_dropped", 0)),
    })
    return skew


# --- 2. scoring latency --------------------------------------------------------------------------


def _serve_pool(settings: Settings, cfg: ServingConfig, say: Say) -> list[bytes]:
    """Produce the pool's events to the stack's topic; wait until the stream serves their entities.

    The events are stamped just before now, or after the latest event time the worker has seen
    if that is later, so on a topic that already holds events they are the latest and never
    late. Returns the bodies of the events whose user and merchant ``GET /features`` answers for.
    """
    start_ms = max(int(time.time() * 1000) - 60_000, event_time_frontier(settings) + 60_000)
    gen = GeneratorConfig(events=cfg.pool_events, seed=cfg.seed + 1000, rate=1_000.0, start_ms=start_ms)
    records = [r for r in wire_records(gen) if r.event_id is not None]
    table = generate_table(gen)
    users = table.column("user_id").to_pylist()
    merchants = table.column("merchant_id").to_pylist()
    producer = make_producer(settings.bootstrap_servers)
    produce(producer, settings.topic, ((r.key, r.value) for r in records))
    producer.close()
    say(f"produced {len(records):,} events to '{settings.topic}'; waiting for GET /features")
    pending = {("user", int(u)) for u in users} | {("merchant", int(m)) for m in merchants}
    deadline = time.monotonic() + max(60.0, cfg.pool_events / 100)
    with httpx.Client(base_url=settings.rest_url, timeout=5.0) as client:
        while pending and time.monotonic() < deadline:
            pending = {(e, i) for e, i in pending if client.get(f"/features/{e}/{i}").status_code != 200}
            if pending:
                time.sleep(0.5)
    served = [rec.value for rec, u, m in zip(records, users, merchants, strict=True)
              if ("user", int(u)) not in pending and ("merchant", int(m)) not in pending]
    if not served:
        raise ServingError(f"the stream served none of the {len(records):,} events' entities within "
                           f"the wait; see {stack.log_file(settings, stack.FEATURES_WORKER.name)}")
    if pending:
        say(f"{len(pending):,} entities still unserved after the wait; scoring the "
            f"{len(served):,} events whose entities are served")
    return served


async def _paced(url: str, bodies: Sequence[bytes], rate: float, n: int, max_in_flight: int
                 ) -> tuple[np.ndarray, list[int], float]:
    """``n`` POST /score requests, request i due at ``i / rate`` s (open loop, bounded)."""
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    lat = np.full(n, np.nan)
    codes = [0] * n
    gate = asyncio.Semaphore(max_in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as client:
        for i in range(WARMUP_REQUESTS):
            await client.post("/score", content=bodies[i % len(bodies)], headers=headers)
        loop = asyncio.get_running_loop()

        async def one(i: int, due: float) -> None:
            async with gate:
                try:
                    resp = await client.post("/score", content=bodies[i % len(bodies)], headers=headers)
                    codes[i] = resp.status_code
                except httpx.HTTPError:
                    codes[i] = 0
            lat[i] = (loop.time() - due) * 1000.0

        t0 = loop.time() + 0.05
        tasks = []
        for i in range(n):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - t0
    return lat, codes, elapsed


def measure_latency(settings: Settings, cfg: ServingConfig, say: Say) -> dict[str, Any]:
    bodies = _serve_pool(settings, cfg, say)
    say(f"POST /score at {cfg.rate:g} requests/s for {cfg.seconds:g} s ({cfg.requests:,} requests)")
    lat, codes, elapsed = asyncio.run(_paced(settings.rest_url, bodies, cfg.rate, cfg.requests,
                                             cfg.max_in_flight))
    errors = sum(1 for c in codes if not 200 <= c < 300)
    by_code: dict[str, int] = {}
    for c in codes:
        by_code[str(c)] = by_code.get(str(c), 0) + 1
    return {
        "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
        "mean_ms": float(lat.mean()), "rate": len(codes) / elapsed, "offered_rate": cfg.rate,
        "requests": len(codes), "errors": errors, "status_codes": by_code,
        "scored_events": len(bodies), "warmup_requests": WARMUP_REQUESTS,
    }


# --- the run -------------------------------------------------------------------------------------


def run_serving(settings: Settings, cfg: ServingConfig, ui: Console) -> dict[str, Any]:
    """Both measurements on a stack this run starts (what already ran is left running)."""

    def say(msg: str) -> None:
        ui.print(msg, highlight=False)

    t0 = time.perf_counter()
    model, trained = ensure_model(settings, cfg.seed, cfg.train_events, say)
    say(f"model {model.version} ({len(model.features)} features)"
        + (" - trained now, no model existed" if trained else ""))
    started: dict[str, bool] = {}
    try:
        # Kafka first: the parity runs then find it up and leave it be.
        started.update(stack.up(settings, components=[stack.KAFKA], on_event=lambda m: say(f"  {m}")))
        skew = {}
        for name, ooo, late in (("in_order", 0.0, 0),
                                ("out_of_order", cfg.out_of_order, cfg.max_lateness_ms)):
            say(f"skew run '{name}': {cfg.events:,} events, out-of-order {ooo:g}, "
                f"max lateness {late / 1000:g} s")
            skew[name] = _skew_run(settings, cfg, model, ooo, late, ui)
        started.update(stack.up(settings, components=[stack.REST, stack.FEATURES_WORKER],
                                on_event=lambda m: say(f"  {m}")))
        latency = measure_latency(settings, cfg, say)
    finally:
        for comp in reversed([stack.KAFKA, stack.REST, stack.FEATURES_WORKER]):
            if started.get(comp.name):
                stack.stop(comp, settings)
                say(f"  {comp.name}: stopped (this command started it)")
    return {
        "config": asdict(cfg),
        "model": {"version": model.version, "path": str(model_path(settings)), "trained_now": trained,
                  "features": list(model.features)},
        "skew": skew, "latency": latency,
        "stack_started": sorted(k for k, v in started.items() if v),
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }


# --- reporting -------------------------------------------------------------------------------


def takeaway(doc: dict[str, Any]) -> str:
    ino, ooo, lat = doc["skew"]["in_order"], doc["skew"]["out_of_order"], doc["latency"]
    parts = []
    if ino["over_0_01"] == 0 and ino["mean_abs_diff"] < 1e-9:
        parts.append(f"In order, the stream's features equal the batch ones and so do the scores "
                     f"(mean |diff| {ino['mean_abs_diff']:.1e} over {ino['events']:,} events).")
    else:
        parts.append(f"Even in order the scores differ: mean |diff| {ino['mean_abs_diff']:.2e}, "
                     f"{ino['over_0_01']:,} of {ino['events']:,} events by more than "
                     f"{SKEW_THRESHOLD} (feature mismatches: {ino['feature_mismatches']:,}).")
    cfg = doc["config"]
    late = (f"with {cfg['out_of_order']:.0%} of events up to {cfg['max_lateness_ms'] / 1000:g} s late, "
            f"{ooo['over_0_01']:,} of {ooo['events']:,} events ({ooo['share_over_0_01']:.2%}) score "
            f"more than {SKEW_THRESHOLD} apart (mean |diff| {ooo['mean_abs_diff']:.2e}, max "
            f"{ooo['max_abs_diff']:.3f})")
    if ooo["over_0_01"] > ino["over_0_01"]:
        parts.append(f"Out of order, {late}: the model serves on features it was not trained on.")
    else:
        parts.append(f"Out of order, {late}: late events barely move the scores here.")
    kept = lat["rate"] >= 0.95 * lat["offered_rate"]
    parts.append(f"POST /score at {lat['offered_rate']:g}/s ({'kept' if kept else 'NOT kept'}: "
                 f"{lat['rate']:.0f}/s achieved): p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
                 f"max {lat['max_ms']:.1f} ms, {lat['errors']} non-2xx of {lat['requests']:,}.")
    if doc["model"]["trained_now"]:
        parts.append("No model existed: one was trained first with train_model() on seeded data.")
    return " ".join(parts)


def table_markdown(doc: dict[str, Any]) -> str:
    skew_rows = [[name, s["out_of_order"], f"{s['max_lateness_ms'] / 1000:g} s", s["events"],
                  s["feature_mismatches"], f"{s['mean_abs_diff']:.2e}", f"{s['max_abs_diff']:.2e}",
                  s["over_0_01"], f"{s['share_over_0_01']:.2%}"] for name, s in doc["skew"].items()]
    lat = doc["latency"]
    return "\n\n".join([
        "## Prediction skew (batch point-in-time features vs the stream's, same model)",
        markdown_table(["run", "out of order", "max lateness", "events scored", "feature mismatches",
                        "mean abs score diff", "max abs score diff", "events > 0.01", "share > 0.01"],
                       skew_rows),
        "## POST /score latency (from each request's due time; loopback)",
        markdown_table(["offered req/s", "achieved req/s", "requests", "non-2xx", "p50 ms", "p95 ms",
                        "p99 ms", "max ms"],
                       [[lat["offered_rate"], round(lat["rate"], 1), lat["requests"], lat["errors"],
                         lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], lat["max_ms"]]]),
        f"Model {doc['model']['version']}"
        + (" (trained by this run: no model existed)." if doc["model"]["trained_now"] else "."),
    ])


def chart(doc: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(13, 4.4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    lat = doc["latency"]
    names = ["p50", "p95", "p99", "max"]
    vals = [lat[f"{n}_ms"] for n in names]
    bars = ax1.bar(names, vals, color=["#4c72b0", "#55a868", "#c44e52", "#8172b2"])
    ax1.bar_label(bars, labels=[f"{v:.1f}" for v in vals], fontsize=8)
    ax1.set_ylabel("latency (ms)")
    ax1.set_xlabel("percentile")
    ax1.set_title(f"POST /score at {lat['offered_rate']:g} req/s ({lat['requests']:,} requests)",
                  fontsize=10)
    runs = list(doc["skew"])
    labels = [r.replace("_", " ") for r in runs]
    mad = [doc["skew"][r]["mean_abs_diff"] for r in runs]
    b2 = ax2.bar(labels, mad, color=["#4c72b0", "#dd8452"])
    ax2.bar_label(b2, labels=[f"{v:.2e}" for v in mad], fontsize=8)
    ax2.set_ylabel("mean |score(batch) - score(stream)| (probability)")
    ax2.set_xlabel("run")
    ax2.set_title("prediction skew: mean absolute difference", fontsize=10)
    share = [100 * doc["skew"][r]["share_over_0_01"] for r in runs]
    b3 = ax3.bar(labels, share, color=["#4c72b0", "#dd8452"])
    ax3.bar_label(b3, labels=[f"{doc['skew'][r]['over_0_01']:,} ({s:.2f} %)" for r, s in zip(runs, share,
                                                                                             strict=True)],
                  fontsize=8)
    ax3.set_ylabel(f"events with |diff| > {SKEW_THRESHOLD} (%)")
    ax3.set_xlabel("run")
    ax3.set_title(f"prediction skew: share over {SKEW_THRESHOLD}", fontsize=10)
    for ax in (ax2, ax3):
        ax.set_ylim(0, max(ax.get_ylim()[1], 1e-6))
    fig.suptitle("Serving the fraud model: batch vs stream scores, and scoring latency")
    return fig


def json_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` object: ``skew`` per run and ``latency``, plus context."""
    keys = ("mean_abs_diff", "over_0_01", "share_over_0_01", "events", "max_abs_diff",
            "feature_mismatches", "out_of_order", "max_lateness_ms")
    lat_keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "rate", "requests", "errors", "offered_rate")
    return {"skew": {r: {k: s[k] for k in keys} for r, s in doc["skew"].items()},
            "latency": {k: doc["latency"][k] for k in lat_keys},
            "model": doc["model"], "elapsed_s": doc["elapsed_s"]}


def write_serving_results(doc: dict[str, Any], results_dir: Path) -> dict[str, Path]:
    return write_results("serving", results_dir, title="Serving: prediction skew and scoring latency",
                         parameters=doc["config"], data={k: v for k, v in doc.items() if k != "config"},
                         table_md=table_markdown(doc), takeaway=takeaway(doc), chart=lambda: chart(doc))
