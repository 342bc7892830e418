"""Child processes owned by one command end with it, even when it is SIGKILLed.

A benchmark, a chaos scenario or a flow starts its workers in sessions of their own (so it
can signal each one's whole group), and stops them in ``finally`` blocks. A SIGKILL of the
command (a test's timeout, an impatient ``kill -9``) runs no ``finally``, and its children
would go on running, holding ports, CPU and consumer-group memberships. On Linux the kernel
can send a signal to a process when its parent ends (``prctl(PR_SET_PDEATHSIG)``); pass
:func:`die_with_parent` as ``preexec_fn`` to ``subprocess.Popen`` to use it.

Linux ties the signal to the *thread* that started the child: a child started from any other
thread than the main one would die when that thread ends, so there it is not set. Nor is it on
other systems. The stack's own services (``playground up``) do not use it: they outlive the
command that starts them by design.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process ends, or None
    where that cannot be had safely (not Linux, not the main thread)."""
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    parent = os.getpid()

    def set_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, sig) != 0:
            return  # the child still runs, as it would without this
        if os.getppid() != parent:  # the parent ended between the fork and the prctl
            os._exit(1)

    return set_death_signal
