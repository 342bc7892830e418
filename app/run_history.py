"""Every written result is also kept as a run: ``results/runs/<UTC timestamp>-<name>/``.

The newest ``KEEP_RUNS`` runs of each name are kept; older ones are removed when a new
one is archived. The report (``results/index.html``) shows the newest run beside the one
before it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNS_DIR = "runs"
KEEP_RUNS = 10  # per result name
# 20261203T101500.123Z-formats: sortable as text, one folder per run.
_RUN_RE = re.compile(r"^(?P<stamp>\d{8}T\d{6}\.\d{3}Z)(?:\.(?P<n>\d+))?-(?P<name>.+)$")


@dataclass(frozen=True)
class Run:
    """One archived run of one result name."""

    name: str
    stamp: str  # UTC, e.g. 20261203T101500.123Z
    path: Path

    @property
    def written_at(self) -> str:
        """The stamp as ISO 8601, e.g. 2026-12-03T10:15:00Z."""
        s = self.stamp
        return f"{s[0:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"

    def doc(self) -> dict[str, Any]:
        path = self.path / f"{self.name}.json"
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def file(self, ext: str) -> Path | None:
        path = self.path / f"{self.name}.{ext}"
        return path if path.is_file() else None


def utc_stamp(now: float | None = None) -> str:
    now = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def archive_run(results_dir: Path, name: str, files: Iterable[Path], keep: int = KEEP_RUNS,
                now: float | None = None) -> Path:
    """Copy one result's files into a new run folder; keep only the newest ``keep`` runs of ``name``."""
    root = results_dir / RUNS_DIR
    root.mkdir(parents=True, exist_ok=True)
    stamp = utc_stamp(now)
    target = root / f"{stamp}-{name}"
    n = 1
    while target.exists():  # two runs of one name within a millisecond
        target = root / f"{stamp}.{n}-{name}"
        n += 1
    target.mkdir()
    for f in files:
        shutil.copy2(f, target / f.name)
    prune(results_dir, name, keep)
    return target


def runs(results_dir: Path, name: str | None = None) -> list[Run]:
    """Archived runs, oldest first (of one name, or of all)."""
    root = results_dir / RUNS_DIR
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        m = _RUN_RE.match(d.name)
        if m and d.is_dir() and (name is None or m["name"] == name):
            out.append((m["stamp"], int(m["n"] or 0), Run(m["name"], m["stamp"], d)))
    return [r for _, _, r in sorted(out, key=lambda t: (t[0], t[1]))]


def prune(results_dir: Path, name: str, keep: int = KEEP_RUNS) -> list[Path]:
    """Remove all but the newest ``keep`` runs of ``name``; the folders removed."""
    old = runs(results_dir, name)[:-keep] if keep > 0 else runs(results_dir, name)
    for r in old:
        shutil.rmtree(r.path, ignore_errors=True)
    return [r.path for r in old]
