"""An engine's client alone (``app/bench/read_ceiling.py``): the clock's figures."""

from __future__ import annotations

import pytest

from dataflow_playground.app.bench.read_ceiling import Clock


def test_the_clock_starts_at_the_first_delivery_and_leaves_it_out(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([(10.0, 1.0), (11.0, 1.5), (12.0, 2.0)])  # (monotonic, process_time) per add()
    now = {"wall": 0.0, "cpu": 0.0}

    def advance() -> None:
        now["wall"], now["cpu"] = next(ticks)

    monkeypatch.setattr("time.monotonic", lambda: now["wall"])
    monkeypatch.setattr("time.process_time", lambda: now["cpu"])
    clock = Clock(target=1_000)
    advance()
    assert clock.add(400) is False  # the first delivery: the clock starts here
    advance()
    assert clock.add(400) is False
    advance()
    assert clock.add(400) is True  # 1,200 >= 1,000 seen
    f = clock.figures()
    assert (f["records"], f["counted"]) == (1_200, 800)
    # 800 records in 2 s of wall and 1 s of CPU; floats compared within 1e-9 relative.
    assert f["wall_s"] == pytest.approx(2.0, rel=1e-9) and f["cpu_s"] == pytest.approx(1.0, rel=1e-9)
    assert f["events_per_s"] == pytest.approx(400.0, rel=1e-9)
    assert f["cpu_s_per_million"] == pytest.approx(1_250.0, rel=1e-9)


def test_a_clock_that_saw_one_delivery_has_no_rate() -> None:
    clock = Clock(target=10)
    assert clock.add(10) is True
    f = clock.figures()
    assert f["records"] == 10 and f["counted"] == 0
    assert f["events_per_s"] is None and f["cpu_s_per_million"] is None

