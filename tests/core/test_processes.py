"""A child started with ``die_with_parent`` ends when its parent is SIGKILLed; one without it does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from dataflow_playground.core.processes import die_with_parent

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")

# The parent: starts a sleeping child in a session of its own (as the benchmarks do), prints
# the child's PID, then waits to be killed.
PARENT = """
import subprocess, sys, time
from dataflow_playground.core.processes import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True, preexec_fn={preexec})
print(child.pid, flush=True)
time.sleep(60)
"""


def _orphan_after_parent_killed(preexec: str) -> psutil.Process:
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(preexec=preexec)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
    finally:
        parent.kill()
        parent.wait(timeout=10)
    return child


def test_the_child_ends_with_its_killed_parent() -> None:
    child = _orphan_after_parent_killed("die_with_parent()")
    try:
        child.wait(timeout=10)
    except psutil.TimeoutExpired:
        os.kill(child.pid, signal.SIGKILL)
        pytest.fail("the child outlived its SIGKILLed parent")


def test_without_it_the_child_outlives_its_parent() -> None:
    """The control: the test above would fail if the death signal did nothing."""
    child = _orphan_after_parent_killed("None")
    try:
        with pytest.raises(psutil.TimeoutExpired):
            child.wait(timeout=1)
    finally:
        os.kill(child.pid, signal.SIGKILL)


def test_not_set_from_another_thread() -> None:
    """Linux would signal the child when the starting thread ends, not the process."""
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(die_with_parent()))
    t.start()
    t.join()
    assert got == [None]
    assert callable(die_with_parent())
