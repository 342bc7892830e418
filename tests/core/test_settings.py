"""The settings object fails fast, with the offending value named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dataflow_playground.core.settings import Settings


def test_defaults_are_loopback_and_distinct() -> None:
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.bootstrap_servers == f"127.0.0.1:{s.kafka_port}"
    assert s.store_path == s.data_dir / "playground.duckdb"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAYGROUND_KAFKA_PORT", "19092")
    monkeypatch.setenv("PLAYGROUND_BOOTSTRAP_SERVERS", "127.0.0.1:29092")
    s = Settings()
    assert s.kafka_port == 19092
    assert s.bootstrap_servers == "127.0.0.1:29092"


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"kafka_port": 70000}, "kafka_port"),
    ({"host": "0.0.0.0"}, "loopback"),
    ({"rest_port": 9092}, "ports must all differ"),
    ({"partitions": 0}, "partitions"),
])
def test_bad_values_fail_fast(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Settings(**kwargs)
