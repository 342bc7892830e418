"""Where a stream worker's time goes: py-spy samples put into parts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflow_playground.app.bench.stream import profile_table, profile_takeaway
from dataflow_playground.app.bench.stream_profile import (
    REST,
    Profiler,
    cannot_attach,
    classify,
    parse_raw,
    py_spy,
    shares,
    split_waits,
    waiting,
)

LOOP = "KafkaPythonWorker.run (dataflow_playground/features/stream/kafka_python_engine.py:130)"
STEP = "StreamRunner.step (dataflow_playground/features/stream/runner.py:197)"
SEND = "StreamRunner._send (dataflow_playground/features/stream/runner.py:237)"
ASYNCIO = "BaseEventLoop._run_once (asyncio/base_events.py:1922)"


def test_a_sample_goes_to_the_first_part_one_of_its_frames_names() -> None:
    operators = [LOOP, STEP, "UserTask.ingest (dataflow_playground/features/stream/tasks.py:205)",
                 "FeatureEngine.process (dataflow_playground/features/stream/state.py:448)"]
    assert classify(operators) == "operators (FeatureEngine)"
    # The runner's send calls into the producer: outputs, not the producer's own thread.
    assert classify([LOOP, STEP, SEND, "KafkaProducer.send (kafka/producer/kafka.py:864)"]) == \
        "outputs: pack and send"
    producer_thread = ["Thread._bootstrap (threading.py:1002)", "Sender.run (kafka/producer/sender.py:113)"]
    assert classify(producer_thread) == "producer (batches, compression, requests)"
    assert classify([LOOP, "KafkaConsumer.poll (kafka/consumer/group.py:827)"]) == \
        "client: fetch and record parsing"
    # Under faust every stack starts in asyncio: it counts only when nothing of the stream is there.
    assert classify([ASYNCIO, "FaustWorker._flush (dataflow_playground/features/stream/faust_engine.py:430)",
                     STEP, "MerchantTask.ingest (dataflow_playground/features/stream/tasks.py:283)"]) == \
        "user and merchant tasks, runner"
    assert classify([ASYNCIO, "Stream.events (faust/streams.py:900)"]) == "faust: stream and agent iteration"
    assert classify([ASYNCIO, "Service._execute_task (mode/services.py:843)"]) == \
        "faust, mode, asyncio: event loop, tasks, futures"
    assert classify(["<module> (somewhere/else.py:1)"]) == REST


def test_shares_sum_to_one_biggest_first_and_raw_lines_parse() -> None:
    raw = (f"{LOOP};{STEP};FeatureEngine.process (dataflow_playground/features/stream/state.py:448) 30\n"
           f"{LOOP};KafkaConsumer.poll (kafka/consumer/group.py:827) 10\n"
           "<module> (x.py:1) 10\n"
           "a line without a count\n")
    stacks = parse_raw(raw)
    assert len(stacks) == 3 and stacks[0][1] == 30 and stacks[0][0][0] == LOOP
    samples, parts = shares(stacks)
    assert samples == 50
    assert list(parts) == ["operators (FeatureEngine)", "client: fetch and record parsing", REST]
    assert parts["operators (FeatureEngine)"] == pytest.approx(0.6, abs=1e-12)
    assert sum(parts.values()) == pytest.approx(1.0, abs=1e-12)
    assert shares([]) == (0, {})


# Tails of native samples of a kafka-python worker (py-spy --native), innermost last.
NET_THREAD = ["Thread.run (threading.py:982)", "NetworkSelector.run_forever (kafka/net/selector.py:239)",
              "EpollSelector.select (selectors.py:468)", "select_epoll_poll (selectmodule.c.h:841)"]
ASLEEP = [
    [*NET_THREAD, "select_epoll_poll_impl (selectmodule.c:1598)", "epoll_wait (libc.so.6)"],
    # back from epoll with the GIL released, waiting to take it again
    [*NET_THREAD, "select_epoll_poll_impl (selectmodule.c:1600)", "pthread_cond_timedwait (libc.so.6)",
     "0x7f3ee3c9af16 (libc.so.6)"],
    ["Sender.run (kafka/producer/sender.py:113)", "DefaultRecordBatchBuilder._maybe_compress "
     "(kafka/record/default_records.py:580)", "compress (lz4/frame/__init__.py:1)",
     "pthread_cond_timedwait (libc.so.6)", "0x7f3ee3c9af16 (libc.so.6)"],
    ["_worker (concurrent/futures/thread.py:83)", "_queue_SimpleQueue_get (_queuemodule.c:1)",
     "PyThread_acquire_lock_timed (thread_pthread.h:1)", "0x7f3ee3ca5d90 (libc.so.6)"],
]
BUSY = [
    ["Sender.run (kafka/producer/sender.py:113)", "_lz4_compress (kafka/codec.py:1)",
     "LZ4F_compressUpdate (lz4frame.c:1)", "LZ4_compress_generic (lz4.c:1)"],
    # a compiled operator's frame is named by its .py line: never a wait, whatever lies under it
    [LOOP, STEP, "process (dataflow_playground/features/stream/state.py:487)", "Py_DECREF (object.h:537)"],
    # Python frames that are named like a wait are not one: only native frames under them count
    [LOOP, "KafkaConsumer.poll (kafka/consumer/group.py:827)"],
    [LOOP, "EpollSelector.select (selectors.py:468)", "select_epoll_poll_impl (selectmodule.c:1598)"],
]


def test_samples_of_threads_asleep_are_counted_apart() -> None:
    assert [waiting(s) for s in ASLEEP] == [True] * len(ASLEEP)
    assert [waiting(s) for s in BUSY] == [False] * len(BUSY)
    busy, asleep = split_waits([(s, 3) for s in ASLEEP] + [(s, 5) for s in BUSY])
    assert asleep == 3 * len(ASLEEP) and busy == [(s, 5) for s in BUSY]
    samples, parts = shares(busy)
    assert samples == 20
    assert parts == {"operators (FeatureEngine)": 0.25, "producer (batches, compression, requests)": 0.25,
                     "client: fetch and record parsing": 0.25, "user and merchant tasks, runner": 0.25}


def test_py_spy_samples_a_real_process(tmp_path: Path) -> None:
    """A process spinning in a file named like the operators' module: py-spy attaches, samples
    it until stopped, and the samples land in that part; its threads asleep count as no part."""
    assert py_spy() is not None, "py-spy comes with the dev dependencies (make install)"
    if (reason := cannot_attach()) is not None:
        pytest.skip(reason)
    pkg = tmp_path / "features" / "stream"
    pkg.mkdir(parents=True)
    for init in (tmp_path / "features" / "__init__.py", pkg / "__init__.py"):
        init.write_text("")
    # Beside the spinning thread, two asleep: one on a lock, one in select.
    (pkg / "state.py").write_text(
        "import select, threading, time\n\n\ndef spin():\n"
        "    threading.Thread(target=threading.Event().wait, args=(30,), daemon=True).start()\n"
        "    threading.Thread(target=select.select, args=([], [], [], 30), daemon=True).start()\n"
        "    end = time.time() + 20\n"
        "    while time.time() < end:\n        sum(range(1000))\n")
    busy = subprocess.Popen([sys.executable, "-c", "from features.stream.state import spin; spin()"],
                            cwd=tmp_path)
    try:
        time.sleep(0.3)
        profiler = Profiler([busy.pid], tmp_path / "profile")
        profiler.start()
        time.sleep(2.0)
        result = profiler.stop()
    finally:
        busy.kill()
        busy.wait(timeout=10)
    assert "error" not in result, result
    assert result["samples"] >= 20  # 100/s for ~2 s, far fewer only if sampling failed
    assert result["parts"]["operators (FeatureEngine)"] >= 0.9


def test_a_missing_py_spy_is_a_reason_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dataflow_playground.app.bench.stream_profile.py_spy", lambda: None)
    profiler = Profiler([1], tmp_path)
    profiler.start()
    assert "py-spy is not installed" in profiler.stop()["error"]


def _entry(engine: str, workers: int, eps: float, parts: dict[str, float] | None,
           error: str | None = None) -> dict[str, object]:
    profile = {"error": error} if error else ({"samples": 1234, "parts": parts} if parts else None)
    if profile and parts and engine == "faust":
        profile["waiting_samples"] = 56
    return {"engine": engine, "workers": workers, "events_per_s_per_worker": eps, "profile": profile}


def test_the_table_and_the_takeaway_come_from_the_profiles() -> None:
    slow = {"faust, mode, asyncio: event loop, tasks, futures": 0.5, "operators (FeatureEngine)": 0.3,
            "online store": 0.15, REST: 0.05}
    fast = {"operators (FeatureEngine)": 0.7, REST: 0.3}
    entries = [_entry("faust", 1, 3_800, slow), _entry("faust", 2, 3_100, slow),
               _entry("kafka-python", 1, 25_000, fast), _entry("kafka-python", 2, 9_000, None, "no ptrace")]
    table = profile_table(entries)
    assert "| faust x1 | faust x2 | kafka-python x1 |" in table
    assert "| operators (FeatureEngine) | 30 % | 30 % | 70 % |" in table
    assert "| online store | 15 % | 15 % | - |" in table
    assert "| busy samples | 1,234 | 1,234 | 1,234 |" in table
    assert "| samples asleep, left out | 56 | 56 | - |" in table  # "-": a profile from before they were
    assert "No profile of kafka-python x2: no ptrace." in table
    text = profile_takeaway(entries)
    # Only the engine below the target, at its smallest worker count, three largest parts.
    assert text == (" Where faust's time goes (py-spy, 1 worker): faust, mode, asyncio: event loop, tasks, "
                    "futures 50 %, operators (FeatureEngine) 30 %, online store 15 %.")
    assert profile_table([_entry("faust", 1, 1.0, None)]) == ""
