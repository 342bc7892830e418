"""The running data path on the session stack: `produce` into the topic the sink reads, the
sink storing and dead-lettering, `up --with-producer`, `topics list/tail` and `logs`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

from dataflow_playground.app import stack
from dataflow_playground.core import kafka_admin, kafka_inspect
from dataflow_playground.core.settings import Settings
from tests.helpers import run_cli, sigint_as_from_a_terminal

_COMMITTED = re.compile(r"committed consumed=(\d+) stored=(\d+) dead=(\d+) duplicates=(\d+)")


def _sink_figures(settings: Settings) -> tuple[int, int, int]:
    """(consumed, stored, dead) from the stack sink's latest committed line (0s before any)."""
    lines = _COMMITTED.findall(stack.log_file(settings, "sink").read_text(errors="replace"))
    if not lines:
        return 0, 0, 0
    consumed, stored, dead, _dups = map(int, lines[-1])
    return consumed, stored, dead


def _wait_for(check: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f}s"
        time.sleep(0.3)


def test_produce_reaches_the_sink_and_malformed_records_are_dead_lettered(
        kafka_stack: Settings, stack_env: dict[str, str]) -> None:
    s = kafka_stack
    assert stack.read_pid(s, "sink") is not None, "`up` starts the sink"
    ends_before = sum(kafka_admin.end_offsets(s.bootstrap_servers, s.topic).values())
    dlq_before = sum(kafka_admin.end_offsets(s.bootstrap_servers, s.sink_dead_letter_topic).values())
    consumed0, stored0, dead0 = _sink_figures(s)

    out = run_cli(stack_env, "produce", "--rate", "2000", "--events", "600", "--malformed", "0.05",
                  "--seed", "11", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"sent 600 \(malformed (\d+)\), acknowledged 600, failed 0", out.stdout)
    assert m, out.stdout
    malformed = int(m.group(1))
    assert 0 < malformed < 600 * 0.15
    assert "peak RSS" in out.stdout

    assert sum(kafka_admin.end_offsets(s.bootstrap_servers, s.topic).values()) == ends_before + 600
    _wait_for(lambda: _sink_figures(s)[0] >= consumed0 + 600, "the sink consumed the 600 records")
    _consumed, stored, dead = _sink_figures(s)
    assert (stored - stored0, dead - dead0) == (600 - malformed, malformed)
    dlq_after = sum(kafka_admin.end_offsets(s.bootstrap_servers, s.sink_dead_letter_topic).values())
    assert dlq_after - dlq_before == malformed

    # The dead letters, with the headers saying who refused them and why.
    tail = run_cli(stack_env, "topics", "tail", s.sink_dead_letter_topic, "-n", "3", timeout=60)
    assert tail.returncode == 0, tail.stdout + tail.stderr
    assert tail.stdout.count("stage=sink") == 3 and "reason=" in tail.stdout, tail.stdout
    assert re.search(rf"source=kafka:{re.escape(s.topic)}:\d+:\d+", tail.stdout), tail.stdout


def test_topics_list_shows_offsets_and_the_sinks_lag(kafka_stack: Settings, stack_env: dict[str, str]
                                                     ) -> None:
    out = run_cli(stack_env, "topics", "list", timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert kafka_stack.topic in out.stdout and kafka_stack.sink_dead_letter_topic in out.stdout
    assert re.search(r"duckdb-sink=\d+", out.stdout), out.stdout
    overview = {t.name: t for t in kafka_inspect.overview(kafka_stack.bootstrap_servers)}
    parts = overview[kafka_stack.topic].partitions
    assert len(parts) == kafka_stack.partitions
    assert all("duckdb-sink" in p.lag and 0 <= p.lag["duckdb-sink"] <= p.end - p.begin for p in parts)

    tail = run_cli(stack_env, "topics", "tail", "no-such-topic", timeout=60)
    assert tail.returncode == 2 and "does not exist" in tail.stdout


def test_up_with_producer_keeps_events_flowing_into_the_store(
        kafka_stack: Settings, stack_env: dict[str, str]) -> None:
    s = kafka_stack
    try:
        up = run_cli(stack_env, "up", "--with-producer", "--producer-rate", "300", timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        assert re.search(r"producer\s+│\s+healthy", up.stdout), up.stdout
        for url in (f"{s.rest_url}/docs", f"{s.rest_url}/health", s.bootstrap_servers,
                    f"{s.host}:{s.rpc_port}"):
            assert url in up.stdout, up.stdout
        _c, stored0, _d = _sink_figures(s)
        _wait_for(lambda: _sink_figures(s)[1] >= stored0 + 150, "the sink stored 150 produced events")
        status = run_cli(stack_env, "status", timeout=60)
        assert re.search(r"producer\s+│\s+healthy", status.stdout), status.stdout
    finally:
        assert stack.stop(stack.PRODUCER, s)
    log = stack.log_file(s, "producer").read_text()
    assert re.search(r"sent [\d,]+ \(malformed 0\), acknowledged [\d,]+, failed 0", log), log[-2000:]


def test_logs_prints_and_follows_a_component_log(kafka_stack: Settings, stack_env: dict[str, str]) -> None:
    out = run_cli(stack_env, "logs", "sink", "-n", "3", timeout=60)
    assert out.returncode == 0 and 1 <= len(out.stdout.splitlines()) <= 3, out.stdout

    missing = run_cli(stack_env, "logs", "nothing-here", timeout=60)
    assert missing.returncode == 2 and "no log for 'nothing-here'" in " ".join(missing.stderr.split())

    marker = "a line written while following\n"
    follow = subprocess.Popen([sys.executable, "-m", "dataflow_playground.app.cli", "logs", "sink",
                               "-n", "1", "-f"], env=stack_env, stdout=subprocess.PIPE, text=True,
                              preexec_fn=sigint_as_from_a_terminal)
    try:
        assert follow.stdout is not None
        follow.stdout.readline()  # the last line: it runs
        with stack.log_file(kafka_stack, "sink").open("a") as log:
            log.write(marker)
        # The sink may write its own lines meanwhile; the marker comes among them. The
        # watchdog ends a follower that hangs (then readline returns "" and the test fails).
        watchdog = threading.Timer(30, follow.kill)
        watchdog.start()
        seen = []
        while (line := follow.stdout.readline()) and line != marker:
            seen.append(line)
        watchdog.cancel()
        assert line == marker, seen[-5:]
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
