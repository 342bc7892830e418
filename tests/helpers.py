"""Helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import socket
import subprocess
import sys


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


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dataflow_playground.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
