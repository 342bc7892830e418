"""Every stream engine name has one registered module, and unknown names fail clearly."""

from __future__ import annotations

import importlib.util

import pytest
from pydantic import ValidationError

from dataflow_playground.app.stack import FEATURES_WORKER, features_worker
from dataflow_playground.core.settings import STREAM_ENGINES, Settings
from dataflow_playground.features.stream.registry import (
    ENGINES,
    UnknownStreamEngineError,
    stream_engine,
)


def test_every_name_is_registered_with_a_module() -> None:
    assert tuple(ENGINES) == STREAM_ENGINES
    for name, engine in ENGINES.items():
        assert engine.name == name
        assert importlib.util.find_spec(engine.module) is not None, engine.module


def test_unknown_engine_names_the_choices() -> None:
    with pytest.raises(UnknownStreamEngineError, match="use one of faust, kafka-python"):
        stream_engine("spark")


def test_stack_runs_the_engine_the_settings_name() -> None:
    assert FEATURES_WORKER.command(Settings())[2] == ENGINES["faust"].module  # the default
    chosen = Settings(stream_engine="kafka-python")
    assert FEATURES_WORKER.command(chosen)[2] == ENGINES["kafka-python"].module
    # Each worker is a static group member under its own id.
    ids = {features_worker(i).command(chosen)[-1] for i in range(3)}
    assert len(ids) == 3 and FEATURES_WORKER.command(chosen)[-2] == "--worker-id"
    with pytest.raises(ValidationError):
        Settings(stream_engine="spark")  # type: ignore[arg-type]
