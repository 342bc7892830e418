"""Shared fixtures. The real broker lives in tests/integration/conftest.py."""

from __future__ import annotations

import os
import random
import socket

import pytest


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound, read, released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """A per-test seed, printed so a failure can be replayed with PLAYGROUND_TEST_SEED."""
    value = int(os.environ.get("PLAYGROUND_TEST_SEED", random.randrange(2**31)))
    print(f"\n[{request.node.name}] seed={value} (replay: PLAYGROUND_TEST_SEED={value})")
    return value
