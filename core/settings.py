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
    # 1: one KRaft node. 3: a native cluster of three combined broker+controller nodes, named
    # kafka, kafka-2 and kafka-3 (node 1 listens on kafka_port/kafka_controller_port).
    brokers: Literal[1, 3] = 1
    kafka_2_port: Port = Field(9094, ge=1, le=65535)
    kafka_2_controller_port: Port = Field(9095, ge=1, le=65535)
    kafka_3_port: Port = Field(9096, ge=1, le=65535)
    kafka_3_controller_port: Port = Field(9097, ge=1, le=65535)
    rest_port: Port = Field(8000, ge=1, le=65535)
    rpc_port: Port = Field(50051, ge=1, le=65535)
    dashboard_port: Port = Field(8080, ge=1, le=65535)  # the live dashboard (services/dashboard)
    # Where a process without a port of its own (sink, stream workers, gRPC, producer) serves
    # /metrics. 0 = any free port (the native stack: many such processes on one host, each
    # listed in <run_dir>/metrics/); a fixed one in a container, for Prometheus to scrape.
    metrics_port: int = Field(0, ge=0, le=65535)
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
    # The native broker's size bound per partition (log.retention.bytes; log.segment.bytes is a
    # quarter of it, min 1 MiB): a partition holds at most retention_bytes + one segment on disk.
    retention_bytes: int = Field(64 * 2**20, ge=2 * 2**20, le=2**40)

    # Which process `up` runs as the features-worker (docs/features.md compares the two).
    stream_engine: StreamEngineName = "faust"
    # Events/s the stack's `producer` component (`up --with-producer`) sends to `topic`.
    producer_rate: float = Field(200.0, gt=0, le=1_000_000)

    # Timeouts.
    startup_timeout_s: float = Field(60.0, gt=0)
    shutdown_timeout_s: float = Field(30.0, gt=0)

    @field_validator("brokers", mode="before")
    @classmethod
    def _brokers_from_text(cls, v: object) -> object:
        # The environment spells it "3"; a Literal of ints accepts only ints.
        if isinstance(v, str) and v.strip() in {"1", "3"}:
            return int(v)
        return v

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
            "PLAYGROUND_DASHBOARD_PORT": self.dashboard_port,
        }
        if self.brokers == 3:  # the other nodes' ports matter only when they run
            ports.update({
                "PLAYGROUND_KAFKA_2_PORT": self.kafka_2_port,
                "PLAYGROUND_KAFKA_2_CONTROLLER_PORT": self.kafka_2_controller_port,
                "PLAYGROUND_KAFKA_3_PORT": self.kafka_3_port,
                "PLAYGROUND_KAFKA_3_CONTROLLER_PORT": self.kafka_3_controller_port,
            })
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"ports must all differ, got {ports}")
        return self

    @property
    def bootstrap_servers(self) -> str:
        if self.bootstrap_servers_override:
            return self.bootstrap_servers_override
        return ",".join(f"{self.host}:{p}" for p in self.kafka_ports)

    @property
    def kafka_ports(self) -> list[int]:
        """The client port of each native Kafka node (one, or three in cluster mode)."""
        if self.brokers == 3:
            return [self.kafka_port, self.kafka_2_port, self.kafka_3_port]
        return [self.kafka_port]

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
