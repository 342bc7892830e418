"""Apache Kafka without Docker: fetch its Maven artifacts once, format KRaft storage, run it.

The broker is the real ``kafka.Kafka`` main class from ``org.apache.kafka:kafka_2.13``,
run as a single combined broker+controller on loopback. Maven brings the jars
(plus a log4j2 binding, which Kafka's POM leaves out) into a cache folder that
later runs reuse.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from dataflow_playground.core.errors import KafkaFetchError, StackError
from dataflow_playground.core.settings import Settings

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dataflow.playground</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version></dependency>
    <!-- Kafka's POM carries slf4j-api 1.7 but no binding: without one the broker logs nothing. -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def lib_dir(settings: Settings) -> Path:
    return settings.kafka_cache.expanduser() / f"kafka_{settings.scala_version}-{settings.kafka_version}"


def ensure_kafka(settings: Settings, log: Path | None = None) -> Path:
    """Return the folder of Kafka's jars, fetching them with Maven the first time."""
    libs = lib_dir(settings)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaFetchError(
            "Maven ('mvn') is not on PATH; it is needed once to fetch Kafka's jars. "
            "Install Maven (e.g. 'apt-get install maven') or run Kafka with Docker "
            "('docker compose up') and set PLAYGROUND_BOOTSTRAP_SERVERS."
        )
    pom = _POM.format(scala=settings.scala_version, kafka=settings.kafka_version,
                      log4j=settings.log4j_version)
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(pom)
        cmd = [mvn, "-q", "-B", "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(staging.glob("kafka_*.jar")):
        if log:
            log.write_text(proc.stdout + proc.stderr)
        raise KafkaFetchError(
            f"fetching Kafka {settings.kafka_version} with Maven failed (exit {proc.returncode}): "
            f"{(proc.stdout + proc.stderr).strip()[-800:]}\n"
            "Check that Maven Central is reachable, or set PLAYGROUND_KAFKA_VERSION to a served 4.x."
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(settings.kafka_version)
    return libs


def java_bin() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is not on PATH; Kafka 4.x needs Java 17 or newer (e.g. openjdk-17).")
    return java


def broker_dir(settings: Settings) -> Path:
    return settings.run_dir / "kafka"


def write_config(settings: Settings) -> Path:
    """Write server.properties and log4j2.properties for the single KRaft node."""
    home = broker_dir(settings).resolve()
    home.mkdir(parents=True, exist_ok=True)
    h, port, cport = settings.host, settings.kafka_port, settings.kafka_controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{h}:{cport}",
        "listeners": f"PLAINTEXT://{h}:{port},CONTROLLER://{h}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{h}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(home / "data"),
        "num.partitions": str(settings.partitions),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # No waiting for more members before the first rebalance: tests start fast.
        "group.initial.rebalance.delay.ms": "0",
        # Stream workers use a 3 s session so a killed one loses its partitions fast (the default
        # minimum, 6 s, would make every failover wait that long).
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "false",
        "log.retention.ms": str(settings.retention_ms),
    }
    cfg = home / "server.properties"
    cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (home / "log4j2.properties").write_text(_LOG4J2.format(log=home / "server.log"))
    return cfg


def format_storage(settings: Settings, libs: Path, cfg: Path) -> None:
    """Format the KRaft log dir once; a formatted dir is kept across restarts."""
    data = broker_dir(settings) / "data"
    if (data / "meta.properties").exists():
        return
    cp = f"{libs}/*"
    java = java_bin()
    cluster_id = subprocess.run(
        [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    proc = subprocess.run(
        [java, "-cp", cp, "kafka.tools.StorageTool", "format", "--standalone",
         "-t", cluster_id, "-c", str(cfg)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"formatting Kafka storage failed: {proc.stdout}{proc.stderr}")


def broker_command(settings: Settings) -> list[str]:
    """Fetch, configure and format as needed; return the command that runs the broker."""
    libs = ensure_kafka(settings)
    cfg = write_config(settings)
    format_storage(settings, libs, cfg)
    heap = settings.kafka_heap
    return [
        java_bin(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={cfg.parent / 'log4j2.properties'}",
        "-Dplayground.component=kafka",  # lets `status` recognise its own JVM
        "-cp", f"{libs}/*", "kafka.Kafka", str(cfg),
    ]
