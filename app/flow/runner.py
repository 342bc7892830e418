"""Processes of a flow run: spawn producers, consumers and services; watch receipts; stop.

Every child runs in its own session with its log in the run folder. Only the
children recorded here are ever signalled, by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from dataflow_playground.app.stack import free_ports
from dataflow_playground.core import receipts
from dataflow_playground.core.errors import PlaygroundError
from dataflow_playground.core.processes import die_with_parent
from dataflow_playground.core.settings import Settings, child_env


class FlowError(PlaygroundError):
    """A flow run could not be carried out (a process died, a service never came up...)."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    cpu_at_exit: float = 0.0
    cpu_base: float = 0.0  # CPU already spent when it became ready (imports, start-up)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_s(self) -> float:
        """CPU seconds (user + system) so far; the last reading once it has exited."""
        try:
            t = psutil.Process(self.pid).cpu_times()
            self.cpu_at_exit = t.user + t.system
        except psutil.Error:
            pass
        return self.cpu_at_exit

    def mark_ready(self) -> None:
        self.cpu_base = self.cpu_s()

    def cpu_used(self) -> float:
        """CPU seconds since ``mark_ready`` (the whole life if never marked)."""
        return max(self.cpu_s() - self.cpu_base, 0.0)

    def tail(self, lines: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the crash the fault runs inject."""
        self.cpu_s()
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        self.cpu_s()
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def free_port(host: str) -> int:
    return free_ports(1, host)[0]


@dataclass
class FlowContext:
    """What every mode's run needs: settings, a run folder, the console, the children."""

    settings: Settings
    console: Console
    seed: int = 42
    quiet: bool = False
    run_dir: Path = field(default_factory=Path)
    children: list[Child] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings, console: Console, seed: int = 42,
               quiet: bool = False) -> FlowContext:
        run_dir = settings.data_dir / "flow" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, console=console, seed=seed, quiet=quiet, run_dir=run_dir.resolve())

    def folder(self, *parts: str) -> Path:
        path = self.run_dir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def spawn(self, name: str, module: str, *args: str, env: dict[str, str] | None = None) -> Child:
        log = self.folder("logs") / f"{name}.log"
        full_env = {**child_env(self.settings), **(env or {})}
        with log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=full_env, start_new_session=True, preexec_fn=die_with_parent())
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout_s=5.0)
        self.children.clear()

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               watch: list[Child] | None = None, interval_s: float = 0.05) -> None:
    """Poll ``check`` until true; fail early (with the log tail) if a watched child dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        for child in watch or []:
            if not child.alive():
                raise FlowError(f"{child.name} exited (code {child.proc.returncode}) while waiting "
                                f"for {what}. Last lines of {child.log}:\n{child.tail()}")
        time.sleep(interval_s)
    raise FlowError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def read_report(path: Path, producer: Child, timeout_s: float) -> dict[str, Any]:
    """Wait for the producer to exit and return its JSON report."""
    try:
        producer.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        producer.kill()
        raise FlowError(f"the producer did not finish within {timeout_s:.0f}s; "
                        f"see {producer.log}") from err
    if producer.proc.returncode != 0 or not path.exists():
        raise FlowError(f"the producer failed (code {producer.proc.returncode}):\n{producer.tail()}")
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def watch_receipts(ctx: FlowContext, label: str, folders: list[Path], expected: int,
                   producer: Child, timeout_s: float, settle_s: float = 3.0) -> int:
    """Show progress until ``expected`` receipts exist, or the producer is done and nothing
    new has arrived for ``settle_s`` (events lost), or ``timeout_s`` passes."""
    def seen() -> int:
        return sum(receipts.count(f) for f in folders)

    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    with _bar(ctx, label, expected) as update:
        while time.monotonic() < deadline:
            n = seen()
            update(n)
            if n >= expected:
                break
            if n != last:
                last, last_change = n, time.monotonic()
            elif not producer.alive() and time.monotonic() - last_change > settle_s:
                break
            time.sleep(0.02)
    return seen()


@contextmanager
def _bar(ctx: FlowContext, label: str, total: int) -> Iterator[Callable[[int], None]]:
    if ctx.quiet:
        yield lambda _n: None
        return
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=ctx.console) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.update(task, completed=n)
