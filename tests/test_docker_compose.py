"""docker-compose.yml is valid and says what the stack needs (no Docker engine required)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
# The compose-spec JSON schema as shipped with docker-compose 1.29 (Apache-2.0).
SPEC = ROOT / "tests" / "fixtures" / "compose_spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_matches_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SPEC.read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft201909Validator)


def test_kafka_is_pinned_kraft_4x_with_healthcheck(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"])
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in json.dumps(env).upper()
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])


def test_services_wait_for_healthy_kafka(compose: dict[str, Any]) -> None:
    for name in ("rest", "rpc", "features-worker", "sink", "topics"):
        svc = compose["services"][name]
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert "build" in svc, f"{name} must be built from the project's Dockerfile"
    assert "healthcheck" in compose["services"]["rest"]


def test_ports_from_env_with_defaults_on_loopback(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\$\{PLAYGROUND_[A-Z0-9_]+:-\d+\}:\d+", port), (name, port)


def test_cluster_profile_has_three_brokers(compose: dict[str, Any]) -> None:
    cluster = {n: s for n, s in compose["services"].items() if "cluster" in s.get("profiles", [])}
    assert len(cluster) == 3
    ids = {s["environment"]["KAFKA_NODE_ID"] for s in cluster.values()}
    assert ids == {1, 2, 3}
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in cluster.values()}
    assert len(voters) == 1 and voters.pop().count("@") == 3


def test_cluster_profile_replicates_as_the_native_cluster(compose: dict[str, Any]) -> None:
    """`docker compose --profile cluster` and `playground up --brokers 3` keep the same copies:
    replication factor 3 (internal topics too) and min.insync.replicas=2."""
    from dataflow_playground.core.kafka_native import CLUSTER_PROPS

    cluster = {n: s for n, s in compose["services"].items() if "cluster" in s.get("profiles", [])}
    assert CLUSTER_PROPS["default.replication.factor"] == "3" and CLUSTER_PROPS["min.insync.replicas"] == "2"
    for name, svc in cluster.items():
        env = svc["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        for key, value in CLUSTER_PROPS.items():
            assert str(env.get("KAFKA_" + key.upper().replace(".", "_"))) == value, (name, key)
        assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false", name
        assert "kafka-broker-api-versions" in " ".join(svc["healthcheck"]["test"]), name
    assert len({svc["environment"]["CLUSTER_ID"] for svc in cluster.values()}) == 1


def test_compose_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    """The containers run the same entrypoints as the native stack: each must exist."""
    from typer.testing import CliRunner

    from dataflow_playground.app.cli import app

    runner = CliRunner()
    for name, svc in compose["services"].items():
        cmd = svc.get("command")
        if not cmd or cmd[0] != "playground":
            continue
        words = [w for w in cmd[1:] if not w.startswith("-")][:2]
        result = runner.invoke(app, [*words[: 2 if words[0] == "serve" else 1], "--help"])
        assert result.exit_code == 0, (name, cmd, result.output)


def test_every_native_component_has_a_compose_service(compose: dict[str, Any]) -> None:
    from dataflow_playground.app.stack import COMPONENTS

    assert {c.name for c in COMPONENTS} <= set(compose["services"])


def test_python_module_entrypoints_exist(compose: dict[str, Any]) -> None:
    import importlib.util

    for name, svc in compose["services"].items():
        cmd = svc.get("command") or []
        if cmd[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(cmd[2]) is not None, (name, cmd)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_it() -> None:
    for args in ([], ["--profile", "cluster"], ["--profile", "monitoring"]):
        out = subprocess.run(["docker-compose", "-f", str(COMPOSE), *args, "config", "-q"],
                             capture_output=True, text=True, check=False, cwd=ROOT)
        assert out.returncode == 0, out.stderr


def test_dockerfile_copies_every_layer_and_installs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(r"^RUN pip install \.$", text, re.M)
    links = sorted(p.name for p in (ROOT / "src" / "dataflow_playground").iterdir() if p.is_symlink())
    assert links, "src/dataflow_playground links the layer folders"
    for folder in ["src", *links]:
        assert f"COPY {folder} ./{folder}" in text, folder


def test_monitoring_profile_scrapes_every_process_and_provisions_grafana(compose: dict[str, Any]) -> None:
    """Prometheus finds each long-running service's /metrics; Grafana's dashboard asks only for
    series that core/metrics.py defines, from the data source it provisions."""
    from dataflow_playground.core import metrics

    services = compose["services"]
    monitoring = {n for n, s in services.items() if "monitoring" in s.get("profiles", [])}
    assert monitoring == {"prometheus", "grafana"}
    mounts = {m.split(":")[0]: m.split(":")[1] for n in monitoring for m in services[n]["volumes"]}
    for local in mounts:
        assert (ROOT / local).exists(), local
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    assert mounts["./monitoring/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    port = int(services["sink"]["environment"]["PLAYGROUND_METRICS_PORT"])
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                host, target_port = target.split(":")
                scraped[host] = int(target_port)
        for sd in job.get("dns_sd_configs", []):
            scraped.update(dict.fromkeys(sd["names"], int(sd["port"])))
    long_running = {"rest", "rpc", "sink", "features-worker"}
    assert long_running <= set(scraped), "a long-running service is not scraped"
    assert set(scraped) <= set(services)
    assert scraped["rest"] == 8000
    assert {scraped[n] for n in long_running - {"rest"}} == {port}

    provisioning = ROOT / "monitoring" / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "dashboards" / "playground.json").read_text())
    defined = {m._name for m in (metrics.EVENTS_RECEIVED, metrics.EVENTS_STORED, metrics.EVENTS_SENT,
                                 metrics.EVENTS_ACKNOWLEDGED, metrics.SEND_ERRORS, metrics.DEAD_LETTERS,
                                 metrics.DUPLICATES, metrics.RETRIES, metrics.CONSUMER_LAG,
                                 metrics.FRESHNESS, metrics.REQUEST_DURATION)}
    asked = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            asked.update(re.findall(r"playground_[a-z_]+", target["expr"]))
    asked_base = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in asked}
    assert asked_base <= defined, asked_base - defined
    for wanted in ("playground_dead_letters", "playground_consumer_lag_records",
                   "playground_freshness_seconds", "playground_request_duration_seconds"):
        assert wanted in asked_base, wanted


def test_compose_runs_playground_commands_that_exist(compose: dict[str, Any]) -> None:
    """A renamed CLI command (e.g. `topics` -> `topics create`) must not break a compose service."""
    import typer

    from dataflow_playground.app.cli import app

    def is_group(node: Any) -> bool:
        return hasattr(node, "list_commands")

    commands = {n: s["command"] for n, s in compose["services"].items()
                if isinstance(s.get("command"), list) and s["command"][:1] == ["playground"]}
    assert "topics" in commands
    for name, cmd in commands.items():
        node: Any = typer.main.get_command(app)
        for word in cmd[1:]:
            if not is_group(node):
                break
            node = node.get_command(typer.Context(node), word)
            assert node is not None, (name, cmd)
        assert not is_group(node), f"{name}: {cmd} names a group of commands, not a command"
