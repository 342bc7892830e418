"""The compiled stream operators (setup.py compiles features/stream/state.py with Cython).

- Where the project was installed with Cython and a C compiler (``make install``, CI), the
  operators that run are the compiled ones: the extension is optional, so a failed build
  would otherwise go unnoticed and every figure would silently be pure Python's.
- Compiled and pure operators give the same values, online vectors and lateness verdicts,
  event by event, in and out of order. Compared exactly: it is one source, so the same
  floating-point operations in the same order.
- In a checkout, a compiled module older than its source is refused, with what to do.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow_playground.features.stream import state as installed
from tests.features.strategies import event_sets

SOURCE = Path(installed.__file__).with_name("state.py")


def _pure() -> ModuleType:
    """The same source, imported as plain Python under another name."""
    spec = importlib.util.spec_from_file_location("state_pure", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["state_pure"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


PURE = _pure()
needs_compiled = pytest.mark.skipif(installed.BUILD != "compiled",
                                    reason="the operators run as pure Python here (no C compiler at install)")


def test_installed_operators_are_compiled_where_they_can_be() -> None:
    if importlib.util.find_spec("Cython") is None or shutil.which("cc") is None:
        pytest.skip("no Cython or no C compiler: the install keeps the pure-Python operators")
    assert installed.BUILD == "compiled", (
        f"{installed.__file__} is the pure-Python module although Cython and a C compiler are "
        "here: the optional extension failed to build (run 'make install' and read its output)")
    assert PURE.BUILD == "pure Python"


@needs_compiled
@settings(max_examples=60)
@given(event_sets(), st.randoms(use_true_random=False))
def test_compiled_and_pure_operators_agree_event_by_event(events: list[dict[str, object]],
                                                          rnd: random.Random) -> None:
    entries = sorted(installed.entry_from(ev) for ev in events)
    rnd.shuffle(entries)  # late events take the correction path
    compiled = installed.FeatureEngine(allowed_lateness_ms=10**12)
    pure = PURE.FeatureEngine(allowed_lateness_ms=10**12)
    for i, e in enumerate(entries):
        assert compiled.process(e) == pure.process(e), (i, e)
        if i % 7 == 0:
            assert sorted(compiled.take_dirty()) == sorted(pure.take_dirty())
    assert compiled.online_state() == pure.online_state()
    assert vars(compiled.stats) == vars(pure.stats)


@needs_compiled
def test_a_compiled_module_older_than_its_source_is_refused(tmp_path: Path) -> None:
    built = Path(installed.__file__)
    checkout = tmp_path / "features" / "stream"  # the layout of a checkout: the check applies there
    checkout.mkdir(parents=True)
    (tmp_path / "setup.py").write_text("")
    shutil.copy2(built, checkout / built.name)
    source = checkout / "state.py"
    shutil.copy2(SOURCE, source)
    load = ("import importlib.machinery as m, importlib.util as u, sys; p = sys.argv[1]; "
            "s = u.spec_from_loader('state', m.ExtensionFileLoader('state', p)); "
            "mod = u.module_from_spec(s); s.loader.exec_module(mod); print(mod.BUILD)")
    stamp = (checkout / built.name).stat().st_mtime

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", load, str(checkout / built.name)],
                              capture_output=True, text=True, timeout=60, check=False)

    os.utime(source, (stamp - 60, stamp - 60))  # compiled after the last edit: accepted
    ok = run()
    assert ok.returncode == 0 and ok.stdout.strip() == "compiled", ok.stderr
    os.utime(source, (stamp + 60, stamp + 60))  # edited since: refused, saying what to do
    stale = run()
    assert stale.returncode != 0
    assert "was compiled before the last change" in stale.stderr and "make install" in stale.stderr
    (tmp_path / "setup.py").unlink()  # an installed wheel (no checkout around it): not checked
    wheel = run()
    assert wheel.returncode == 0 and wheel.stdout.strip() == "compiled", wheel.stderr
