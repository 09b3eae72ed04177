"""Peer 2: what a Python team picks off the shelf, encode/broadcaster (0.3.1) over its Kafka backend.

It follows broadcaster's README pattern: one ``Broadcast("kafka://host:port")`` per process, connected in the
app's lifespan; each WebSocket runs a receiver (here ``ping`` -> ``pong``) and a sender in an anyio task group,
the sender being ``async with broadcast.subscribe(channel=...) as subscriber: async for event in subscriber:
await websocket.send_text(event.message)``; the POST calls ``await broadcast.publish(channel=..., message=...)``.
One channel (= one Kafka topic, ``--channel-prefix`` + tenant id) per tenant isolates tenants. As the seed does,
the POST first writes the position to SQLite (``_common``), from which every connection reads ``initial_state``.

Everything between the app and Kafka is broadcaster's own, unmodified, with its defaults: one AIOKafkaProducer
(``send_and_wait``, acks=1, no batching delay) and one group-less AIOKafkaConsumer per process (``latest`` offset
reset) whose topic subscription is replaced as channels gain or lose subscribers, a listener task that copies every
record into an unbounded ``asyncio.Queue`` per subscriber, and one ``send_text`` per subscriber. It works with
aiokafka 0.14 as is. As shipped it loses records: when a channel loses its last subscriber, ``unsubscribe`` drops
*every* topic until some channel gets a new first subscriber, and each subscription change resets positions to the
end. ``--fix-unsubscribe`` (off by default, not what users get) repairs only the first.

The one thing the app must add: the broker has ``auto.create.topics.enable=false``, and broadcaster creates no
topic (subscribing to a missing one waits for an assignment forever; publishing fails after 40 s), so a tenant's
topic is created (1 partition, RF 1) with aiokafka's admin client before its first publish or subscribe, once per
process; ``--tenants a,b`` creates some at start-up. ``initial_state`` is read once the subscription is taken.

Run: ``LOCSTREAM_JWT_SECRET=<32+ bytes> python -m bench.peers.broadcaster_peer --host 127.0.0.1 --port P
--kafka 127.0.0.1:9092 --db /tmp/bc.db [--channel-prefix broadcaster.] [--tenants bench-tenant]``
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from broadcaster import Broadcast
from broadcaster._backends.kafka import KafkaBackend
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.peers._common import (
    WS_PATH,
    accept_viewer,
    parser,
    peer_app,
    serve,
)


def dumps(message: dict[str, Any]) -> str:
    """The text ``WebSocket.send_json`` would send (Starlette's separators)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class KafkaBackendUnsubscribingOne(KafkaBackend):
    """Opt-in (``--fix-unsubscribe``), off by default: broadcaster 0.3.1's ``KafkaBackend.unsubscribe`` calls
    ``consumer.unsubscribe()``, which drops *every* channel's topic when one channel loses its last subscriber, so
    all other tenants' viewers get nothing until some channel gets a new first subscriber. This keeps the others."""

    async def unsubscribe(self, channel: str) -> None:
        self._consumer_channels.discard(channel)
        if self._consumer_channels:
            self._consumer.subscribe(topics=self._consumer_channels)
        else:
            self._consumer.unsubscribe()


class TenantTopics:
    """A tenant's channel is the Kafka topic ``prefix + tenant_id``, created once before its first use."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._ready: set[str] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)  # aiokafka wants a running loop
        await self._admin.start()

    async def close(self) -> None:
        await self._admin.close()

    async def ensure(self, tenant_id: str) -> str:
        topic = self._prefix + tenant_id
        if topic not in self._ready:
            async with self._lock:
                if topic not in self._ready:
                    try:
                        await self._admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
                    except TopicAlreadyExistsError:
                        pass
                    self._ready.add(topic)
        return topic


def create_app(kafka: str, db_path: Path, prefix: str, tenants: list[str], fix_unsubscribe: bool = False) -> FastAPI:
    url = f"kafka://{kafka}"
    broadcast = Broadcast(backend=KafkaBackendUnsubscribingOne(url)) if fix_unsubscribe else Broadcast(url)
    topics = TenantTopics(kafka, prefix)

    @asynccontextmanager
    async def running() -> AsyncIterator[None]:
        await topics.start()
        for tenant_id in tenants:
            await topics.ensure(tenant_id)
        await broadcast.connect()
        try:
            yield
        finally:
            await broadcast.disconnect()
            await topics.close()

    async def publish(tenant_id: str, location: dict[str, Any]) -> None:
        channel = await topics.ensure(tenant_id)
        await broadcast.publish(channel=channel, message=dumps({"type": "location_update", "data": location}))

    peer = peer_app("broadcaster peer", db_path, publish, running)
    app, auth = peer.app, peer.auth

    async def receiver(websocket: WebSocket) -> None:
        async for message in websocket.iter_text():
            if message == "ping":
                await websocket.send_text(dumps({"type": "pong"}))

    async def sender(websocket: WebSocket, channel: str, tenant_id: str) -> None:
        async with broadcast.subscribe(channel=channel) as subscriber:
            locations = await peer.store.tenant_locations(tenant_id)
            await websocket.send_text(dumps({"type": "initial_state", "data": locations}))
            # broadcaster 0.3.1 annotates Subscriber.__aiter__ as returning "AsyncGenerator | None" (events typed
            # "Event | None"); at run time it is an async generator of Event, hence the two ignores.
            async for event in subscriber:  # type: ignore[union-attr]
                await websocket.send_text(event.message)  # type: ignore[union-attr]

    @app.websocket(WS_PATH)
    async def technician_locations_ws(websocket: WebSocket) -> None:
        claims = await accept_viewer(websocket, auth)
        if claims is None:
            return
        tenant_id, connection_id = claims.tenant_id, str(uuid.uuid4())
        await websocket.send_text(dumps({"type": "connected", "connection_id": connection_id, "tenant_id": tenant_id}))
        channel = await topics.ensure(tenant_id)
        try:
            async with anyio.create_task_group() as task_group:  # README: run until the first one completes

                async def run_receiver() -> None:
                    await receiver(websocket)
                    task_group.cancel_scope.cancel()

                task_group.start_soon(run_receiver)
                await sender(websocket, channel, tenant_id)
        except* WebSocketDisconnect:  # a send to a client that has gone; the README lets it propagate
            pass

    return app


def main() -> None:
    p = parser("encode/broadcaster with its Kafka backend behind a FastAPI WebSocket endpoint.")
    p.add_argument("--kafka", required=True, help="bootstrap server, host:port")
    p.add_argument("--channel-prefix", default="broadcaster.", help="topic of a tenant = prefix + tenant id")
    p.add_argument("--tenants", default="", help="comma-separated tenant ids whose topics are created at start-up")
    p.add_argument("--fix-unsubscribe", action="store_true", help="not broadcaster as shipped: see the class above")
    args = p.parse_args()
    tenants = [t for t in args.tenants.split(",") if t]
    app = create_app(args.kafka, args.db, args.channel_prefix, tenants, args.fix_unsubscribe)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
