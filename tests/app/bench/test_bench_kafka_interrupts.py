"""``bench kafka``'s interrupts: a signal whose KeyboardInterrupt a library swallowed is raised again."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dataflow_playground.app.bench.kafka import _Interrupts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_swallowed_interrupt_is_raised_at_the_next_check(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    interrupts = _Interrupts()
    with interrupts.installed():
        interrupts.check()  # nothing received yet
        try:
            os.kill(os.getpid(), sig)
            time.sleep(1)  # the handler runs here and raises
            pytest.fail("the handler did not raise KeyboardInterrupt")
        except KeyboardInterrupt:
            pass  # what kafka-python's event loop does with an exception in a task step
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        with pytest.raises(KeyboardInterrupt):
            list(interrupts.watch(range(5)))
    assert signal.getsignal(sig) is before


def test_watch_passes_every_record_through() -> None:
    interrupts = _Interrupts()
    n = 2 * _Interrupts.CHECK_EVERY + 3
    assert list(interrupts.watch(range(n))) == list(range(n))
