"""``playground bench stream``, the pure parts: arguments, figures, recovery bookkeeping, takeaway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dataflow_playground.app.bench.stream import (
    ENTRY_KEYS,
    RecoveryTracker,
    StreamBenchConfig,
    StreamBenchError,
    balanced,
    event_freshness,
    event_records,
    latency_summary,
    median_or_none,
    parse_engines,
    parse_workers,
    pick_victim,
    reread_records,
    takeaway,
    targets_met,
    write_stream_results,
)
from dataflow_playground.app.cli import app
from dataflow_playground.core.settings import Settings
from dataflow_playground.features.stream.registry import ENGINES

# -- arguments ---------------------------------------------------------------------------------


def test_worker_counts_parse_from_commas_and_repeats() -> None:
    assert parse_workers("1,2") == [1, 2]
    assert parse_workers(["2", "1, 4"]) == [2, 1, 4]


@pytest.mark.parametrize("bad", ["0", "-1", "x", "1.5", "1,1", "", " , "])
def test_bad_worker_counts_are_refused(bad: str) -> None:
    with pytest.raises(StreamBenchError):
        parse_workers(bad)


def test_engines_come_from_the_registry() -> None:
    assert parse_engines("faust,kafka-python") == ["faust", "kafka-python"]
    assert parse_engines(["kafka-python"]) == ["kafka-python"]
    with pytest.raises(StreamBenchError, match="unknown stream engine 'flink'"):
        parse_engines("kafka-python,flink")
    with pytest.raises(StreamBenchError, match="twice"):
        parse_engines("faust,faust")
    with pytest.raises(StreamBenchError):
        parse_engines("")


@pytest.mark.parametrize("kwargs", [
    {"events": 0}, {"events": -5}, {"repeats": 0}, {"rate": 0.0}, {"freshness_seconds": 0.0},
    {"kill_after_s": 0.1}, {"warmup_events": -1}, {"recovery_timeout_s": 1.0},
    {"workers": ()}, {"workers": (0,)},
    {"workers": (7,)},  # 3 partitions: 6 tasks, a 7th worker would own nothing
    {"workers": (1, 1)}, {"engines": ()}, {"engines": ("spark",)},
])
def test_config_refuses_out_of_range_numbers(kwargs: dict[str, Any]) -> None:
    with pytest.raises(StreamBenchError):
        StreamBenchConfig(**kwargs)


def test_config_defaults_are_valid() -> None:
    cfg = StreamBenchConfig()
    assert cfg.engines == tuple(ENGINES) and cfg.workers == (1, 2) and cfg.rate == 2_000
    assert StreamBenchConfig(rate=2_000, freshness_seconds=15).freshness_events == 30_000
    assert StreamBenchConfig(workers=(6,), partitions=3).workers == (6,)


@pytest.mark.parametrize("args", [["--events", "0"], ["--workers", "0"], ["--workers", "1,a"],
                                  ["--engine", "flink"], ["--repeats", "0"], ["--rate", "-1"],
                                  ["--freshness-seconds", "0"], ["--workers", "9"]])
def test_cli_validates_before_touching_kafka(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", "stream", *args])
    assert result.exit_code == 2, result.output


# -- freshness per event -----------------------------------------------------------------------


def test_freshness_is_when_both_stages_are_visible() -> None:
    rows = [
        (1, "user", 1000, 1010), (1, "merchant", 1000, 1050),  # 50: the later stage counts
        (2, "merchant", 2000, 2005), (2, "user", 2000, 2030),  # 30: whichever stage is later
        (3, "user", 3000, 3001),  # no merchant row: not fully visible
    ]
    f = event_freshness(rows)
    assert sorted(f.values_ms) == [30, 50]
    assert f.incomplete == 1
    # Each stage on its own, for the same (fully visible) events.
    assert sorted(f.by_stage_ms["user"]) == [10, 30] and sorted(f.by_stage_ms["merchant"]) == [5, 50]


def test_freshness_counts_a_stage_from_its_first_visibility_and_skips_the_warm_in() -> None:
    rows = [
        (5, "user", 100, 110), (5, "merchant", 100, 140),
        (5, "merchant", 100, 900),  # recomputed after a restore: visible since 140 already
        (1, "user", 0, 5000), (1, "merchant", 0, 5000),  # warm-in, below min_event_id
    ]
    assert event_freshness(rows, min_event_id=2).values_ms == [40]
    assert sorted(event_freshness(rows).values_ms) == [40, 5000]


def test_latency_summary() -> None:
    s = latency_summary(list(range(1, 101)))
    assert s["samples"] == 100 and s["max_ms"] == 100
    assert s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    with pytest.raises(StreamBenchError):
        latency_summary([])


# -- recovery ----------------------------------------------------------------------------------


def test_reread_is_the_dead_workers_progress_past_the_checkpoint_clipped_at_zero() -> None:
    last = {"user-0": 1000, "user-1": 500, "merchant-0": 40}
    restored = {"user-0": 900, "user-1": 600, "merchant-0": 40}
    assert reread_records(last, restored) == {"user-0": 100, "user-1": 0, "merchant-0": 0}


def _st(position: int, restored: int, read: int) -> dict[str, int]:
    return {"position": position, "restored_position": restored, "read_since_restore": read}


def test_tracker_two_workers_tells_moved_tasks_from_the_survivors() -> None:
    # At the kill: w0 owned user-0 and merchant-0, w1 the others (nobody says so; the counters do).
    before = {"user-0": _st(1000, 0, 1000), "merchant-0": _st(80, 0, 80),
              "user-1": _st(990, 0, 990), "merchant-1": _st(81, 0, 81)}
    ends = {"user-0": 1010, "merchant-0": 82, "user-1": 995, "merchant-1": 83}
    tr = RecoveryTracker(before, ends)
    # 0.5 s: the survivor's tasks advance, the dead worker's stand still.
    tr.observe(0.5, {**before, "user-1": _st(1100, 0, 1100), "merchant-1": _st(90, 0, 90)})
    assert tr.live == {"user-1", "merchant-1"} and not tr.done()
    # 3.5 s: the survivor restored w0's tasks from their checkpoints (900 and 70), not caught up yet.
    tr.observe(3.5, {"user-0": _st(950, 900, 50), "merchant-0": _st(75, 70, 5),
                     "user-1": _st(1300, 1100, 0), "merchant-1": _st(95, 90, 0)})
    assert tr.moved == ["merchant-0", "user-0"] and not tr.done()
    assert tr.pending() == ["merchant-0", "user-0"]
    # 4.0 s: merchant-0 caught up with what its input held at the kill; 4.6 s: user-0 too.
    tr.observe(4.0, {"user-0": _st(1005, 900, 105), "merchant-0": _st(82, 70, 12)})
    assert not tr.done()
    tr.observe(4.6, {"user-0": _st(1010, 900, 110), "merchant-0": _st(90, 70, 20)})
    assert tr.done()
    s = tr.summary()
    assert s["recovery_s"] == 4.6 and s["takeover_s"] == 3.5
    assert s["reread_records"] == (1000 - 900) + (80 - 70)
    assert s["reread_by_stage"] == {"user": 100, "merchant": 10}
    assert s["moved_tasks"] == ["merchant-0", "user-0"]
    assert s["tasks"]["user-0"] == {"last_position": 1000, "restored_position": 900, "end_at_kill": 1010,
                                    "owned_s": 3.5, "caught_up_s": 4.6, "reread": 100}


def test_tracker_one_worker_restarted_moves_every_task() -> None:
    before = {"user-0": _st(500, 300, 200), "merchant-0": _st(50, 30, 20)}
    tr = RecoveryTracker(before, {"user-0": 520, "merchant-0": 55})
    tr.observe(0.2, before)  # the restart has not restored anything yet
    assert not tr.moved and not tr.live and not tr.done()
    # The new process restored merchant-0 from the position the dead one had restored too; the
    # restart still shows, because read_since_restore starts again from 0.
    tr.observe(2.0, {"user-0": _st(450, 450, 0), "merchant-0": _st(30, 30, 0)})
    assert tr.moved == ["merchant-0", "user-0"]
    tr.observe(2.5, {"user-0": _st(530, 450, 80), "merchant-0": _st(60, 30, 30)})
    assert tr.done()
    s = tr.summary()
    assert (s["recovery_s"], s["takeover_s"], s["reread_records"]) == (2.5, 2.0, 50 + 20)


def test_tracker_survivor_tasks_rebalanced_after_advancing_are_not_moved() -> None:
    """An eager rebalance revokes and restores the survivor's own tasks too; they advanced first."""
    before = {"user-0": _st(100, 0, 100), "user-1": _st(100, 0, 100)}
    tr = RecoveryTracker(before, {"user-0": 100, "user-1": 100})
    tr.observe(0.3, {"user-0": _st(100, 0, 100), "user-1": _st(120, 0, 120)})
    tr.observe(3.4, {"user-0": _st(100, 95, 0), "user-1": _st(130, 130, 0)})
    assert tr.moved == ["user-0"] and tr.live == {"user-1"}
    assert tr.done() and tr.summary()["reread_records"] == 5


def test_the_victim_is_worker_0_unless_it_owns_nothing() -> None:
    assert pick_victim({0: 4, 1: 2}) == 0
    assert pick_victim({0: 0, 1: 6}) == 1  # worker 0 lost its tasks (session timeout under load)
    assert pick_victim({1: 6}) == 1  # worker 0's row is from an older process
    assert pick_victim({0: 6}) == 0


def test_balanced_means_every_worker_owns_a_task_and_every_task_an_owner() -> None:
    assert balanced({0: 4, 1: 2}, workers=2, tasks=6)
    assert not balanced({0: 6, 1: 0}, workers=2, tasks=6)
    assert not balanced({0: 4}, workers=2, tasks=6)
    assert not balanced({0: 3, 1: 2}, workers=2, tasks=6)
    assert balanced({0: 6}, workers=1, tasks=6)


# -- takeaway and results ----------------------------------------------------------------------


def _entry(engine: str, workers: int, eps: float, p99: float = 30.0, mx: float = 120.0,
           recovery: float | None = 2.0, reread: int = 1_000, events: int = 1_000_000) -> dict[str, Any]:
    return {"engine": engine, "workers": workers, "events": events, "repeats": 3,
            "events_per_s": eps, "events_per_s_per_worker": eps / workers, "cpu_s_per_million": 40.0,
            "freshness_p50_ms": p99 / 3, "freshness_p99_ms": p99, "freshness_max_ms": mx,
            "recovery_s": recovery, "takeover_s": None if recovery is None else recovery / 2,
            "recovery_timeout_s": 120.0, "recovered_runs": 3 if recovery is not None else 1,
            "reread_records": reread,
            "full_replay_s": events / eps, "loadavg_before": (1.0, 1.0, 1.0),
            "loadavg_after": (1.5, 1.2, 1.0), "freshness": {}, "runs": []}


def test_targets_are_judged_from_the_numbers() -> None:
    assert targets_met(_entry("kafka-python", 1, 25_000)) == {
        "events_per_s": True, "freshness_p99_ms": True, "freshness_max_ms": True, "recovery_s": True}
    assert targets_met(_entry("kafka-python", 1, 15_000, p99=60, mx=300, recovery=6)) == {
        "events_per_s": False, "freshness_p99_ms": False, "freshness_max_ms": False, "recovery_s": False}
    assert targets_met(_entry("kafka-python", 2, 15_000))["events_per_s"] is None  # per worker, 1 worker


def test_takeaway_says_what_the_numbers_say() -> None:
    entries = [_entry("kafka-python", 1, 24_000), _entry("kafka-python", 2, 26_400, recovery=4.2),
               _entry("faust", 1, 12_000, p99=80, mx=400, recovery=7.5, reread=5_000),
               _entry("faust", 2, 11_000)]
    text = takeaway(entries, events=1_000_000, rate=2_000, cores=2)
    assert "kafka-python with 1 worker catches up at 24,000 events/s (target >= 20,000: met)" in text
    assert "2 workers 26,400 events/s, 1.10x (no real gain" in text
    assert "this machine's 2 cores" in text
    assert "caught up within 4.2 s (target 5 s: met), re-reading" in text
    assert "replaying the whole 1,000,000-event topic took that group (2 workers) 37.9 s" in text
    assert "faust with 1 worker catches up at 12,000 events/s (target >= 20,000: missed)" in text
    assert "p99 <= 80 ms and max <= 400 ms (targets 50/250 ms: missed/missed)" in text
    assert "0.92x (slower" in text
    assert "re-reading 5,000 records at most" in text
    assert "kafka-python sustains 2.00x the events/s of faust" in text


def test_takeaway_sets_each_engine_against_its_client_alone() -> None:
    slow, fast = _entry("faust", 1, 5_000), _entry("kafka-python", 1, 15_000)
    slow |= {"client_alone_events_per_s": 6_000.0, "client_alone_cpu_s_per_million": 170.0}
    fast |= {"client_alone_events_per_s": 75_000.0, "client_alone_cpu_s_per_million": 13.0}
    text = takeaway([slow, fast], events=1_000_000, rate=2_000, cores=2)
    assert ("its Kafka client alone, with no work per record, reads 6,000 events/s here (170 CPU s per 1M), "
            "below the target: no worker of this engine can reach it on this machine") in text
    assert "reads 75,000 events/s here (13 CPU s per 1M), and a worker reaches 20% of that" in text
    # Not measured: not mentioned.
    assert "client alone" not in takeaway([_entry("faust", 1, 5_000)], events=1_000, rate=2_000, cores=2)


def test_a_recovery_that_did_not_finish_is_said_so() -> None:
    entries = [_entry("kafka-python", 1, 24_000, recovery=None), _entry("kafka-python", 2, 26_000)]
    assert targets_met(entries[0])["recovery_s"] is False
    text = takeaway(entries, events=1_000_000, rate=2_000, cores=2)
    assert ("the moved tasks were not back (owned, caught up and processing) within 120 s in 2 of 3 runs "
            "with 1 worker (target 5 s: missed)") in text


def test_runs_that_did_not_recover_are_named_even_when_the_median_did() -> None:
    ok = _entry("kafka-python", 2, 14_000, recovery=5.6)
    ok["recovered_runs"] = 2
    text = takeaway([_entry("kafka-python", 1, 10_000), ok], events=100_000, rate=2_000, cores=2)
    assert "71.4 s. With 2 workers, 1 of 3 runs did not recover within 120 s (the median" in text


def test_median_of_recoveries_counts_a_timeout_as_longest() -> None:
    assert median_or_none([3.0, 1.0, 2.0]) == 2.0
    assert median_or_none([3.0, None, 1.0]) == 3.0
    assert median_or_none([None, None, 1.0]) is None
    assert median_or_none([1.0, 3.0]) == 2.0
    assert median_or_none([1.0, None]) is None
    assert median_or_none([]) is None


def test_takeaway_scaling_words_follow_the_ratio() -> None:
    near = takeaway([_entry("kafka-python", 1, 10_000), _entry("kafka-python", 2, 19_000)],
                    events=1000, rate=2_000, cores=8)
    assert "1.90x (close to linear" in near and "8 cores" in near
    some = takeaway([_entry("kafka-python", 1, 10_000), _entry("kafka-python", 2, 14_000)],
                    events=1000, rate=2_000, cores=2)
    assert "1.40x (some gain, far from linear" in some


def test_results_files_carry_every_key(tmp_path: Path) -> None:
    settings = Settings(results_dir=tmp_path, data_dir=tmp_path / "data")
    cfg = StreamBenchConfig(events=1_000_000, workers=(1, 2), engines=("kafka-python",))
    entries = [_entry("kafka-python", 1, 24_000), _entry("kafka-python", 2, 30_000, recovery=None)]
    entries[0] |= {"client_alone_events_per_s": 74_547.3, "client_alone_cpu_s_per_million": 13.3}
    hop = {"events": 100, "received": 100, "samples": 100, "p50_ms": 14.0, "p99_ms": 33.0, "max_ms": 41.0}
    summary = write_stream_results(settings, cfg, entries, {"loadavg_1_5_15_before": (1, 1, 1),
                                                            "loadavg_1_5_15_after": (2, 1, 1)}, {}, hop)
    for ext in ("json", "md", "png"):
        assert (tmp_path / f"stream.{ext}").stat().st_size > 0
    doc = json.loads((tmp_path / "stream.json").read_text())
    assert doc["name"] == "stream" and doc["takeaway"] == summary["takeaway"]
    assert summary["kafka_hop"] == hop and "p50 14 / p99 33 / max 41 ms" in summary["takeaway"]
    for e in doc["entries"]:
        assert set(ENTRY_KEYS) <= set(e)
        assert set(e["targets_met"]) == {"events_per_s", "freshness_p99_ms", "freshness_max_ms", "recovery_s"}
    md = (tmp_path / "stream.md").read_text()
    assert summary["takeaway"] in md and "| kafka-python | 2 |" in md and "![" in md
    assert "not within 120 s" in md
    assert "| 74,547 (13) |" in md and "| - |" in md  # client alone: measured once per engine, or not
    json.dumps(summary)  # --json prints it as is


def test_event_records_follow_a_given_start_and_id() -> None:
    recs = event_records(50, seed=3, start_ms=2_000_000_000_000, first_id=10_000)
    events = [json.loads(v) for _k, v in recs]
    assert [e["event_id"] for e in events] == list(range(10_000, 10_050))
    assert all(e["ts"] >= 2_000_000_000_000 for e in events)
    assert all(k == str(e["user_id"]).encode() for (k, _v), e in zip(recs, events, strict=True))
