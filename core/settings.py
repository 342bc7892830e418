"""One settings object for the whole project.

Only process entry points (the CLI, the services, the sink and the stream workers'
``main``) build it from the environment (``PLAYGROUND_*`` variables or a ``.env``
file), with :func:`get_settings`; components receive it, or the few values they
need, as arguments. A parent hands its settings to a child process with :func:`child_env`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = int
# The stream engines, by the name users pick (PLAYGROUND_STREAM_ENGINE, --engine). Their
# modules are registered in features/stream/registry.py.
StreamEngineName = Literal["faust", "kafka-python"]
STREAM_ENGINES: tuple[StreamEngineName, ...] = get_args(StreamEngineName)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PLAYGROUND_", env_file=".env", extra="ignore", frozen=True
    )

    # Network: every server binds to loopback.
    host: str = "127.0.0.1"
    # Where servers listen. Loopback by default; 0.0.0.0 only inside a container, whose
    # ports docker-compose.yml publishes on the host's 127.0.0.1.
    bind_host: str = "127.0.0.1"
    kafka_port: Port = Field(9092, ge=1, le=65535)
    kafka_controller_port: Port = Field(9093, ge=1, le=65535)
    rest_port: Port = Field(8000, ge=1, le=65535)
    rpc_port: Port = Field(50051, ge=1, le=65535)
    # Set to use an external broker (e.g. the Docker one) instead of the native one.
    bootstrap_servers_override: str | None = Field(
        None,
        validation_alias=AliasChoices("PLAYGROUND_BOOTSTRAP_SERVERS",
                                      "PLAYGROUND_BOOTSTRAP_SERVERS_OVERRIDE",
                                      "bootstrap_servers_override"),
    )

    # Folders. duckdb_path defaults to <data_dir>/playground.duckdb.
    data_dir: Path = Path("data")
    duckdb_path: Path | None = None
    results_dir: Path = Path("results")
    kafka_cache: Path = Path.home() / ".cache" / "dataflow-playground" / "kafka"

    # Kafka distribution fetched from Maven Central.
    kafka_version: str = "4.1.1"
    scala_version: str = "2.13"
    log4j_version: str = "2.25.3"
    kafka_heap: str = "512m"

    # Topics. Each consumer dead-letters to its own topic (headers: core/dead_letters.py), so a
    # bad record appears once per topic and each copy says who refused it.
    topic: str = "transactions"
    sink_dead_letter_topic: str = "transactions.dlq.sink"
    features_dead_letter_topic: str = "transactions.dlq.features"
    partitions: int = Field(3, ge=1, le=64)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=60_000)

    # Which process `up` runs as the features-worker (docs/features.md compares the two).
    stream_engine: StreamEngineName = "faust"

    # Timeouts.
    startup_timeout_s: float = Field(60.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, gt=0)

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, v: str) -> str:
        if not (v.startswith("127.") or v in {"localhost", "::1"}):
            raise ValueError(f"host must be a loopback address, got {v!r}")
        return v

    @field_validator("bind_host")
    @classmethod
    def _loopback_or_container(cls, v: str) -> str:
        if not (v.startswith("127.") or v in {"localhost", "::1", "0.0.0.0"}):
            raise ValueError(f"bind_host must be loopback (or 0.0.0.0 in a container), got {v!r}")
        return v

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        ports = {
            "PLAYGROUND_KAFKA_PORT": self.kafka_port,
            "PLAYGROUND_KAFKA_CONTROLLER_PORT": self.kafka_controller_port,
            "PLAYGROUND_REST_PORT": self.rest_port,
            "PLAYGROUND_RPC_PORT": self.rpc_port,
        }
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"ports must all differ, got {ports}")
        return self

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap_servers_override or f"{self.host}:{self.kafka_port}"

    @property
    def run_dir(self) -> Path:
        """PID files, logs and the broker's data for the native stack."""
        return self.data_dir / "run"

    @property
    def store_path(self) -> Path:
        """The DuckDB file: ``duckdb_path`` if set, else inside ``data_dir``."""
        return self.duckdb_path or self.data_dir / "playground.duckdb"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a child process: the same settings, spelled as PLAYGROUND_*."""
    env = dict(os.environ)
    for key, value in settings.model_dump(exclude_none=True).items():
        env[f"PLAYGROUND_{key.upper()}"] = str(value)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
