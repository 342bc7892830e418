"""Apache Kafka without Docker: fetch its Maven artifacts once, format KRaft storage, run it.

The broker is the real ``kafka.Kafka`` main class from ``org.apache.kafka:kafka_2.13``,
run as a single combined broker+controller on loopback, or (``brokers=3``) as three such
nodes forming one cluster with a static quorum of their three controllers. Maven brings the jars
(plus a log4j2 binding, which Kafka's POM leaves out) into a cache folder that
later runs reuse.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    """The single node's folder (config, ``data/``, ``server.log``)."""
    return settings.run_dir / "kafka"


def cluster_dir(settings: Settings) -> Path:
    """The cluster's folder: one sub-folder per node and the cluster id they share.

    Apart from the single node's, so switching between 1 and 3 brokers keeps both logs.
    """
    return settings.run_dir / "kafka-cluster"


def segment_bytes(settings: Settings) -> int:
    """A segment is deleted only once closed: a quarter of the retention keeps the bound tight."""
    return max(settings.retention_bytes // 4, 2**20)


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node, broker and controller in one JVM, as the stack runs it."""

    node_id: int
    name: str  # the stack component's name: kafka, kafka-2, kafka-3
    port: int
    controller_port: int
    home: Path  # server.properties, log4j2.properties, server.log, data/
    port_setting: str  # the PLAYGROUND_* variables that set the ports, for error messages
    controller_port_setting: str


# What three nodes change in the single node's configuration: every internal topic and the
# topics created without an explicit replication factor get three copies, and a write
# acknowledged with acks=all is on at least two of them (so it survives losing one node).
CLUSTER_PROPS = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
}
CLUSTER_MIN_INSYNC = int(CLUSTER_PROPS["min.insync.replicas"])


def nodes(settings: Settings) -> list[KafkaNode]:
    """The native Kafka nodes ``settings`` asks for: one, or three (``settings.brokers``)."""
    if settings.brokers == 1:
        return [KafkaNode(1, "kafka", settings.kafka_port, settings.kafka_controller_port,
                          broker_dir(settings), "PLAYGROUND_KAFKA_PORT", "PLAYGROUND_KAFKA_CONTROLLER_PORT")]
    ports = [(settings.kafka_port, settings.kafka_controller_port),
             (settings.kafka_2_port, settings.kafka_2_controller_port),
             (settings.kafka_3_port, settings.kafka_3_controller_port)]
    out = []
    for n, (port, cport) in enumerate(ports, start=1):
        prefix = "PLAYGROUND_KAFKA" if n == 1 else f"PLAYGROUND_KAFKA_{n}"
        out.append(KafkaNode(n, "kafka" if n == 1 else f"kafka-{n}", port, cport,
                             cluster_dir(settings) / f"node-{n}",
                             f"{prefix}_PORT", f"{prefix}_CONTROLLER_PORT"))
    return out


def _node(settings: Settings, node: KafkaNode | None) -> KafkaNode:
    return node or nodes(settings)[0]


def write_config(settings: Settings, node: KafkaNode | None = None) -> Path:
    """Write server.properties and log4j2.properties for ``node`` (default: the first node)."""
    node = _node(settings, node)
    home = node.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    h, port, cport = settings.host, node.port, node.controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
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
        # kafka-python stream workers use a 3 s session so a killed one loses its partitions fast (the default
        # minimum, 6 s, would make every failover wait that long).
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "false",
        "log.retention.ms": str(settings.retention_ms),
        # Bound data/ by size too (per partition): the broker deletes whole closed segments.
        "log.retention.bytes": str(settings.retention_bytes),
        "log.segment.bytes": str(segment_bytes(settings)),
        "log.retention.check.interval.ms": "60000",
    }
    if settings.brokers == 1:
        # A dynamic quorum of one, formatted --standalone.
        props["controller.quorum.bootstrap.servers"] = f"{h}:{cport}"
    else:
        # A static quorum of the three controllers, fixed when the nodes are formatted.
        props["controller.quorum.voters"] = ",".join(
            f"{n.node_id}@{h}:{n.controller_port}" for n in nodes(settings))
        props.update(CLUSTER_PROPS)
    cfg = home / "server.properties"
    cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (home / "log4j2.properties").write_text(_LOG4J2.format(log=home / "server.log"))
    return cfg


def new_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` makes one, without starting a JVM:
    16 random bytes in URL-safe base64, unpadded, not starting with '-' (Kafka's Uuid)."""
    while True:
        new = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not new.startswith("-"):
            return new


def cluster_id(settings: Settings) -> str:
    """The id every node of the cluster is formatted with: made once, kept in the cluster's folder."""
    path = cluster_dir(settings) / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    new = new_cluster_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
    return new


# For the StorageTool run, which lasts a second or two: no optimising JIT tier and the serial
# collector start faster (measured: 1.8 s instead of 2.8 s per format on two cores).
_ONE_SHOT_JVM = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


def format_storage(settings: Settings, libs: Path, cfg: Path, node: KafkaNode | None = None) -> None:
    """Format the node's KRaft log dir once; a formatted dir is kept across restarts."""
    node = _node(settings, node)
    if (node.home / "data" / "meta.properties").exists():
        return
    cp = f"{libs}/*"
    java = [java_bin(), *_ONE_SHOT_JVM]
    if settings.brokers == 1:
        cid, mode = new_cluster_id(), ["--standalone"]
    else:
        cid, mode = cluster_id(settings), []  # the voters are in server.properties
    proc = subprocess.run(
        [*java, "-cp", cp, "kafka.tools.StorageTool", "format", *mode, "-t", cid, "-c", str(cfg)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"formatting Kafka storage of {node.name} failed: {proc.stdout}{proc.stderr}")


def node_command(settings: Settings, node: KafkaNode | None = None) -> list[str]:
    """Fetch, configure and format as needed; return the command that runs ``node``.

    In cluster mode every node not yet formatted is formatted here, all at once (one
    StorageTool JVM each, seconds apiece): the nodes are started together anyway.
    """
    node = _node(settings, node)
    libs = ensure_kafka(settings)
    cfg = write_config(settings, node)
    others = [n for n in nodes(settings) if n != node and not (n.home / "data" / "meta.properties").exists()]
    if settings.brokers > 1 and others:
        cluster_id(settings)  # made once, before the nodes are formatted with it
        with ThreadPoolExecutor(len(others) + 1) as pool:
            jobs = [pool.submit(format_storage, settings, libs, write_config(settings, n), n) for n in others]
            format_storage(settings, libs, cfg, node)
            for job in jobs:
                job.result()
    else:
        format_storage(settings, libs, cfg, node)
    heap = settings.kafka_heap
    return [
        java_bin(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={cfg.parent / 'log4j2.properties'}",
        f"-Dplayground.component={node.name}",  # lets `status` recognise its own JVM
        "-cp", f"{libs}/*", "kafka.Kafka", str(cfg),
    ]


def broker_command(settings: Settings) -> list[str]:
    """The command that runs the first (in single mode: the only) node."""
    return node_command(settings)
