"""The project installs as one import root and keeps its layers: checked on real artefacts.

- The wheel holds ``dataflow_playground/`` and its dist-info, nothing else at the top, and
  the ``playground`` console script.
- The import contract (``make lint`` runs it) passes on the tree, and fails as soon as a
  lower layer imports a higher one: tried on a copy of the tree with one bad import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.slow


def test_wheel_has_one_top_level_package_and_the_cli(tmp_path: Path) -> None:
    src = tmp_path / "project"
    # A copy, so the build leaves nothing in the checkout; the layer links are kept as links.
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "data", "results", "build", "*.egg-info", "__pycache__", ".*_cache"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = next(t for t in tops if t.endswith(".dist-info"))
    assert tops == {"dataflow_playground", dist_info}
    for layer in ("core", "producers", "storage", "consumers", "features", "services", "app"):
        assert f"dataflow_playground/{layer}/__init__.py" in names, layer
    assert "dataflow_playground/core/proto/events_pb2.py" in names
    assert "dataflow_playground/core/proto/events.proto" in names
    for page in ("index.html", "app.js", "style.css"):  # the dashboard serves them from the package
        assert f"dataflow_playground/services/dashboard/static/{page}" in names, page
    meta = zipfile.ZipFile(wheel)
    assert meta.read(f"{dist_info}/top_level.txt").decode().split() == ["dataflow_playground"]
    assert "playground = dataflow_playground.app.cli:main" in meta.read(
        f"{dist_info}/entry_points.txt").decode()


def _lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=src, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(src)},
                          capture_output=True, text=True, check=False, timeout=120)


def test_import_contract_holds_and_catches_an_upward_import(tmp_path: Path) -> None:
    src = tmp_path / "src"
    # Links followed: the copy is a plain package tree that shadows the installed one.
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    ok = _lint_imports(src)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (src / "dataflow_playground" / "core" / "upward.py").write_text(
        "from dataflow_playground.app import stack  # a core module reaching for the app\n")
    broken = _lint_imports(src)
    assert broken.returncode != 0
    assert "dataflow_playground.core.upward -> dataflow_playground.app.stack" in broken.stdout
