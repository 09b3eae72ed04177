"""Readiness, metrics, JSON logs and the dashboard, against the real services."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from geofencer.processor import GeofencerMetrics
from launch import broker
from launch.broker_config import BrokerConfig
from locstream.auth import TokenVerifier
from locstream.readiness import ProgressWatch
from producers.metrics import IngestMetrics
from projector.metrics import ProjectorMetrics
from schemas import ws as ws_messages
from schemas.claims import Role
from tests.support.maps import open_map
from tests.support.stack import Stack, eventually
from ws_edge.app import Edge
from ws_edge.framing import CLOSE_PROTOCOL_ERROR
from ws_edge.settings import EdgeSettings

ROOT = Path(__file__).resolve().parents[2]


def test_a_consumer_whose_position_stands_while_records_wait_is_stuck_and_one_that_moves_is_not() -> None:
    watch = ProgressWatch(stuck_after=30)
    watch.observe({0: 10, 1: 5}, {0: 10, 1: 3}, now=0)
    assert watch.stuck({0: 10, 1: 5}, {0: 10, 1: 3}, now=20) == []  # not long enough yet
    watch.observe({0: 12, 1: 9}, {0: 12, 1: 3}, now=31)  # partition 0 follows; 1 stands still with records waiting
    assert watch.stuck({0: 12, 1: 9}, {0: 12, 1: 3}, now=31) == [1]
    watch.observe({0: 12, 1: 9}, {0: 12, 1: 4}, now=32)  # it moved: not stuck, the clock starts again
    assert watch.stuck({0: 12, 1: 9}, {0: 12, 1: 4}, now=50) == []
    watch.observe({2: 7}, {}, now=0)  # a partition this consumer does not read is never its problem
    assert watch.stuck({2: 7}, {}, now=1000) == []


def test_a_probe_failure_is_told_by_its_innermost_cause_and_a_timeout_as_one() -> None:
    from aiokafka.errors import KafkaConnectionError

    from locstream.kafka import KafkaUnreachableError
    from locstream.readiness import reason_of

    def raised(outer: BaseException, inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise outer from exc
        except BaseException as exc:
            return exc

    wrapped = raised(KafkaConnectionError("Unable to bootstrap"), ConnectionResetError("reset by peer"))
    assert reason_of(wrapped) == "ConnectionResetError: reset by peer"
    assert reason_of(raised(TimeoutError(), asyncio.CancelledError())) == "no answer within the probe's time"
    told = KafkaUnreachableError(
        "cannot reach Kafka at a:1 over SSL: a:1: TLS: the broker's certificate is not trusted"
    )
    assert reason_of(raised(told, KafkaConnectionError("x"))) == str(told)


@pytest.mark.integration
async def test_readyz_follows_the_broker_and_metrics_count_what_was_acknowledged(tmp_path: Path, stack: Stack) -> None:
    own = BrokerConfig(data_dir=tmp_path / "broker", port=broker.free_port_pair())
    await asyncio.to_thread(broker.start, own)
    try:
        env = {"KAFKA_BOOTSTRAP_SERVERS": own.bootstrap}
        api = await stack.start("producers", env=env)
        edge = await stack.start("ws-edge", env=env)
        async with httpx.AsyncClient(timeout=10) as client:

            async def ready(url: str) -> bool | None:
                return (await client.get(f"{url}/readyz")).status_code == 200 or None

            await eventually(lambda: ready(api.url), timeout=30, what="the API to be ready")
            await eventually(lambda: ready(edge.url), timeout=30, what="the edge to be ready")
            token = stack.token("acme-fiber", Role.DEVICE_GATEWAY)
            for latitude in (1.0, 2.0):
                answer = await client.post(
                    f"{api.url}/api/v1/field-service/technicians/tech-ada/location",
                    json={"latitude": latitude, "longitude": 3.0},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 202
            metrics = (await client.get(f"{api.url}/metrics", headers=stack.admin_headers())).text
            assert re.search(r"^locstream_ingest_events_total 2\.0$", metrics, flags=re.M), metrics
            assert "locstream_ingest_produce_seconds_count 2.0" in metrics
            await asyncio.to_thread(broker.stop, own)

            async def refused(url: str) -> bool | None:
                answer = await client.get(f"{url}/readyz")
                return (answer.status_code == 503 and "broker not reachable" in answer.text) or None

            await eventually(lambda: refused(api.url), timeout=30, what="the API to say it is not ready")
            await eventually(lambda: refused(edge.url), timeout=30, what="the edge to say it is not ready")
    finally:
        await asyncio.to_thread(broker.stop, own)


@pytest.mark.integration
async def test_json_logs_carry_the_connection_id_on_a_connections_lines(stack: Stack) -> None:
    edge = await stack.start("ws-edge", env={"LOCSTREAM_LOG_FORMAT": "json"})
    client, _ = await open_map(edge, stack.token("acme-fiber"))
    await client.close()

    async def subscribed() -> list[dict[str, object]] | None:
        lines = [json.loads(line) for line in edge.log().splitlines() if line.startswith("{")]
        found = [line for line in lines if "subscribed" in str(line["message"])]
        return lines if found else None

    lines = await eventually(subscribed, timeout=10, what="the connection's log line")
    (line,) = [line for line in lines if "subscribed" in str(line["message"])]
    assert (
        line["level"] == "INFO"
        and line["logger"] == "ws_edge.session"
        and str(line["connection_id"]) in str(line["message"])
    )
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)


def test_the_dashboard_and_the_docs_name_only_metrics_the_services_export() -> None:
    exported: set[str] = set()
    families: set[str] = set()  # as a scrape shows them: a counter with _total, a histogram by its name
    registries = [IngestMetrics().registry, ProjectorMetrics().registry, GeofencerMetrics().registry]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LOCSTREAM_DEV", "1")
        settings = EdgeSettings()
        registries.append(Edge.build(settings, TokenVerifier(settings.auth)).metrics.registry)
    for registry in registries:
        for metric in registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(metric.type, [""])
            exported.update(metric.name + suffix for suffix in suffixes)
            families.add(metric.name + ("_total" if metric.type == "counter" else ""))
            if metric.type != "counter":
                exported.add(metric.name)
    dashboard = json.loads((ROOT / "deploy/grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"locstream_[a-z_]+", target["expr"])
    }
    assert used and used <= exported, used - exported
    for topic in (
        "ingest_events",
        "produce_seconds",
        "projector_lag",
        "edge_consumer_lag",
        "edge_connections",
        "edge_deliveries",
        "conflated",
        "slow_disconnects",
        "delivery_seconds",
        "geofencer_fixes",
        "geofencer_crossings",
    ):
        assert any(topic in name for name in used), topic
    operations = set(re.findall(r"`(locstream_[a-z_]+)`", (ROOT / "docs/operations.md").read_text()))
    assert families <= operations, f"operations.md's metrics table misses {families - operations}"
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:  # every page names metrics as scraped
        named = set(re.findall(r"`(locstream_[a-z_]+)`", page.read_text()))
        assert named <= exported, f"{page.name} names {named - exported}"


def test_the_close_codes_the_docs_give_are_the_ones_the_edge_sends() -> None:
    sent = {value for name, value in vars(ws_messages).items() if name.startswith("CLOSE_")} | {CLOSE_PROTOCOL_ERROR}
    edge_md = (ROOT / "docs/edge.md").read_text()
    table = edge_md[edge_md.index("## Close codes") :].split("\n## ", 1)[0]
    assert {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, flags=re.M)} == sent
    for page in ("docs/operations.md", "docs/client.md", "README.md"):
        text = (ROOT / page).read_text()
        named = {int(code) for code in re.findall(r"close `?(\d{4})`?", text)}
        assert named <= sent, f"{page} names close codes the edge never sends: {named - sent}"
    operations = (ROOT / "docs/operations.md").read_text()
    assert not re.search(r"any close the edge decides: \d", operations), "a partial list: link edge.md's table"
