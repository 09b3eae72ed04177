"""One dispatcher connection on the live feed, from its upgrade request to its close.

A ``ClientSession`` is an ``asyncio.Protocol``: it takes the connection over from uvicorn's HTTP protocol once the
upgrade request is parsed (``locstream/serve.py``), answers it (``locstream/websocket_upgrade.py``), and from then
on the connection is this one object, its subscriber in the fan-out and the kernel's buffers. No task runs for it in
the steady state: the fan-out writes through to its transport when records arrive, the transport calls
``resume_writing`` when a full buffer drains, client frames arrive in ``data_received``, and timers handle pings
and the token's expiry. Only the opening (verifying the token, which may fetch the provider's keys, and waiting for
the edge to catch up with the topic) and an in-band token refresh run as short-lived tasks. A crowd arriving or
leaving at once is served a few per turn of the event loop (``ws_edge/turn_budget.py``, budgets of the registry,
``ws_edge/sessions.py``): upgrades are answered, close frames answered and connections whose client ended its side
dropped, in their budget's turn.

Order on the wire: ``connected``, then either ``initial_state`` (the tenant's map and its cursor) or, for a client
back with a cursor the resume buffer still covers, ``resumed`` and exactly the updates it missed; then the tenant's
fences (all of them for a tenant with few; else the map asks for those in its view: ``ws_edge/fence_views.py``),
then every update that matches its filter. Subscribing and taking the snapshot (or the missed updates)
happen in one step with no await between them, and the live feed applies and publishes in one step too, so every
change is either in what the client got first or queued after it.

Writing (``ws_edge/socket_writer.py``): data is handed to the transport ``WRITE_PIECE`` at a time while it takes
it; the rest of a frame waits in the session's backlog until the transport drains (a big tenant's
``initial_state``, shared by every client connecting meanwhile, is never copied per connection). Control frames
(pong, ping, close) never cut into a frame: they wait in the backlog too. Closing for the edge's reasons (slow
consumer, token expired, a policy violation, shutdown) writes the close frame behind what was handed over; a
client that has not completed the close handshake within the slow-consumer deadline is dropped, so a close always
ends the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, cast

from prometheus_client import Histogram

from locstream import bounded_json
from locstream.websocket_upgrade import (
    PER_MESSAGE_DEFLATE,
    UpgradeRequest,
    deflate_accepted,
    http_error,
    refusal,
    switching_protocols,
)
from schemas.claims import TokenClaims
from schemas.cursor import Cursor, InvalidCursorError, decode_cursor
from schemas.ws import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNSUPPORTED_DATA,
    PING_TEXT,
)
from ws_edge import messages
from ws_edge.auth_handshake import (
    ViewerRefusedError,
    auth_message,
    expires_in,
    offered,
    origin_allowed,
    refreshed_claims,
    viewer_claims,
)
from ws_edge.connection_state import Liveness, Phase, edge_close, peer_close
from ws_edge.fanout import Subscriber, TooManyConnectionsError
from ws_edge.fence_views import FENCES_INTERVAL, fences_in_view, fences_up_front
from ws_edge.filters import EVERYTHING, FilterError, described, parse_subscribe
from ws_edge.framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameReader,
    FramingError,
    control_frame,
    text_frame,
)
from ws_edge.inbound import InboundRule
from ws_edge.initial_state import SharedInitialState
from ws_edge.outbox import Message
from ws_edge.socket_writer import SocketWriter
from ws_edge.wire import encode

if TYPE_CHECKING:
    from ws_edge.sessions import Sessions

log = logging.getLogger(__name__)
access_log = logging.getLogger("uvicorn.access")  # the same logger (and token redaction) as every HTTP request

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024  # an inbound message over this closes with 1009
MAX_EARLY_MESSAGES = 16  # client messages kept while the session opens; more: 1008
MAX_BYTES_AFTER_CLOSE = 2 * MAX_CLIENT_MESSAGE_BYTES  # read while waiting for a client's close frame; more: dropped
_CLOSE_FRAME_STARTS = 0x80 | OP_CLOSE  # the first byte of a close frame (FIN and its opcode)


class ClientSession(SocketWriter, asyncio.Protocol):
    """One live-feed connection (``Sessions.take_over`` makes it); its socket writer is ``SocketWriter``."""

    __slots__ = (
        "_close_deadline",
        "_early",
        "_early_waiter",
        "_expiry",
        "_fences_asked",
        "_liveness",
        "_opening",
        "_pending_deadline",
        "_read_after_close",
        "_refreshing",
        "_rule",
        "_unanswered",
        "batched",
        "claims",
        "connection_id",
        "deflate",
        "latency",
        "liveness",
        "phase",
        "reader",
        "request",
        "sessions",
        "subscriber",
    )

    def __init__(self, sessions: Sessions, request: UpgradeRequest, latency: Histogram | None) -> None:
        SocketWriter.__init__(self)
        self.sessions = sessions
        self.latency = latency  # a sampled connection observes each write's end-to-end latency
        self.request: UpgradeRequest | None = request  # dropped once the session is open
        self.connection_id = str(uuid.uuid4())
        self.phase = Phase.OPENING
        self.reader = FrameReader(MAX_CLIENT_MESSAGE_BYTES)
        self.batched = False  # protocol v2, as the handshake agreed
        self.deflate = False  # permessage-deflate negotiated: a big initial_state goes out compressed
        self.claims: TokenClaims | None = None
        self.subscriber: Subscriber | None = None
        self._rule = InboundRule(sessions.settings.client_message_rate, time.monotonic())
        self._opening: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._early: list[str] | None = None  # client messages that came while the session opened
        self._early_waiter: asyncio.Future[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._liveness: asyncio.TimerHandle | None = None
        settings = sessions.settings
        self.liveness = Liveness(settings.ping_interval_seconds, settings.ping_timeout_seconds)
        self._close_deadline: asyncio.TimerHandle | None = None
        self._pending_deadline: asyncio.TimerHandle | None = None  # the server's deadline for verifying a token
        self._read_after_close = 0
        self._unanswered: list[bytes] | None = None  # what came while the upgrade waited for its turn
        self._fences_asked = -FENCES_INTERVAL

    # -- the opening handshake ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport: one, not a subclass
        self._pending()  # from now on: the gate may shed it, the handshake deadline runs
        self._unanswered = []
        self.sessions.handshakes.run(self._answer_upgrade)  # now, or in a later turn of the loop

    def _answer_upgrade(self) -> None:
        """101, or the HTTP error that refuses the upgrade; then the token is waited for or verified."""
        unanswered, self._unanswered = self._unanswered, None
        if self.phase is not Phase.OPENING:  # gone while it waited for its turn
            return
        assert self.request is not None and self.transport is not None
        transport = self.transport
        request, settings = self.request, self.sessions.settings
        bad = refusal(request)
        origin = request.headers.get("origin")
        if (
            bad is None
            and origin is not None
            and not origin_allowed(origin, request.headers.get("host"), settings.allowed_origins)
        ):
            bad = 403, "origin not allowed"
        if bad is not None:
            self._access(bad[0])
            transport.write(http_error(*bad))
            transport.close()
            return
        offer = offered(request.query, request.header_list("sec-websocket-protocol"), request.cookies())
        self.batched = offer.protocol == 2
        self.deflate = self.reader.inflate = deflate_accepted(request)
        extensions = PER_MESSAGE_DEFLATE if self.deflate else None
        transport.write(switching_protocols(request, offer.subprotocol, extensions))
        self._access(101)
        if offer.token:
            self._opening = asyncio.create_task(self._open(offer.token, offer.cursor), name="edge-session-open")
        else:  # the token comes as the first message
            self._opening = asyncio.create_task(self._await_auth(offer.cursor), name="edge-session-auth")
        self._opening.add_done_callback(self._task_ended)
        if unanswered:  # what the client sent before its turn came: frames sent before it saw the 101
            transport.resume_reading()
            self.data_received(b"".join(unanswered))

    def _pending(self) -> None:
        """Pending in the server's gate (``locstream/admission.py``) until its token is verified, for at most the
        server's handshake deadline."""
        gate = self.sessions.gate
        if gate is not None:
            gate.admit(self)
            seconds = self.sessions.pending_seconds
            self._pending_deadline = asyncio.get_running_loop().call_later(seconds, self._verification_late)

    def _verification_late(self) -> None:
        self._pending_deadline = None
        if self.sessions.gate is not None:
            self.sessions.gate.timed_out(self)
        self.shed()

    def _not_pending(self) -> None:
        if self._pending_deadline is not None:
            self._pending_deadline.cancel()
            self._pending_deadline = None
        if self.sessions.gate is not None:
            self.sessions.gate.release(self)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A bug in the opening or a refresh closes the connection (1011) and is logged, never left unretrieved.
        The task is let go: kept, with its coroutine, it was 2 of the 38 objects per open session the garbage
        collector scans (10,000 sessions: pauses of the loop up to 142 ms)."""
        if task is self._opening:
            self._opening = None
        elif task is self._refreshing:
            self._refreshing = None
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "connection %s: %s failed",
            self.connection_id,
            task.get_name(),
            exc_info=task.exception(),
            extra={"connection_id": self.connection_id},
        )
        self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def _log(self, message: str, *args: object) -> None:
        """An INFO line about this connection: its id first in ``message``, and as a field of JSON logs."""
        log.info(message, self.connection_id, *args, extra={"connection_id": self.connection_id})

    def _access(self, status: int) -> None:
        request = self.request
        if request is not None and self.sessions.access_log:
            access_log.info('%s - "WebSocket %s" %d', request.client, request.target, status)

    async def _await_auth(self, cursor: str | None) -> None:
        """Wait for ``{"type": "auth", "token": ...}`` as the first message (``data_received`` hands it over)."""
        if self._early is None:
            self._early = []
        if not self._early:  # (it may have come already, before this task's first step)
            waiter = self._early_waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.sessions.settings.auth_timeout_seconds):
                    await waiter
            except TimeoutError:
                self.close(CLOSE_UNAUTHENTICATED, "no token in time")
                return
            finally:
                self._early_waiter = None
        first = self._early.pop(0)
        try:
            token, in_message_cursor = auth_message(first)
        except bounded_json.TooDeepError as exc:
            self.close(CLOSE_INVALID_PAYLOAD, str(exc))
            return
        except ValueError as exc:
            self.close(CLOSE_UNAUTHENTICATED, str(exc))
            return
        await self._open(token, in_message_cursor or cursor)

    async def _open(self, token: str, cursor: str | None) -> None:
        sessions = self.sessions
        try:
            claims = await viewer_claims(token, sessions.verifier)
        except ViewerRefusedError as exc:
            self.close(CLOSE_POLICY_VIOLATION, exc.reason)
            return
        if self.phase is not Phase.OPENING:  # closed meanwhile (a shutdown): nothing may follow its close frame
            return
        self._not_pending()
        self.claims = claims
        tenant_id = claims.tenant_id
        feed = sessions.feed
        if not feed.serves(tenant_id):
            self.close(CLOSE_POLICY_VIOLATION, "tenant served by another edge node")
            return
        self.write(text_frame(messages.connected(self.connection_id, tenant_id, 2 if self.batched else 1).encode()))
        try:
            await asyncio.wait_for(feed.ready.wait(), sessions.settings.bootstrap_timeout_seconds)
        except TimeoutError:
            self.close(CLOSE_INTERNAL_ERROR, "edge not caught up with the topic")
            return
        resumable = await self._resumable_cursor(tenant_id, cursor) if self.phase is Phase.OPENING else None
        # Its first frames are made and written a few of a tenant's crowd at a time, while others go on. Waiting here
        # is harmless: the edge only moves further past a cursor it had reached.
        async with sessions.openings.slot(tenant_id):
            if self.phase is Phase.OPENING:
                await self._subscribe(claims, cursor, resumable)

    async def _subscribe(self, claims: TokenClaims, cursor: str | None, resumable: Cursor | None) -> None:
        """Subscribe, and write the first frames."""
        sessions = self.sessions
        tenant_id, feed = claims.tenant_id, sessions.feed
        try:
            subscriber = sessions.fanout.add(tenant_id, feed.floor_of(tenant_id), self._closed_by_edge)
        except TooManyConnectionsError as exc:
            self.close(CLOSE_TRY_AGAIN_LATER, str(exc))
            return
        self.subscriber = subscriber
        self._watch_expiry(claims)
        first = self._first_frames(subscriber, tenant_id, cursor, resumable)  # in the subscription's step
        for frame in fences_up_front(sessions.fences, tenant_id):  # after the first frames
            subscriber.send(frame)
        if isinstance(first, SharedInitialState):  # a big map is encoded in slices, shared with the crowd
            pieces = await first.frame(self.deflate)
            if self.phase is not Phase.OPENING:
                return
        else:
            pieces = (first,)
        del first
        self.phase = Phase.LIVE
        self.request = None
        subscriber.wake_with(self._flush_soon)
        self._log("connection %s of tenant %s subscribed (protocol %d)", tenant_id, 2 if self.batched else 1)
        now = time.monotonic()
        written = [self.write(piece) for piece in pieces]
        if not written[-1]:
            subscriber.writing(now)  # the sweep's deadline: a client that does not read is slow
        del pieces  # a big tenant's map is not kept per connection once handed over
        subscriber.attach(self)
        self._ping_later()
        early, self._early = self._early or [], None
        for text in early:
            self._handle(text)
        self.flush(now)

    async def _resumable_cursor(self, tenant_id: str, asked: str | None) -> Cursor | None:
        """The client's cursor, decoded, once this edge has applied up to it (None: no cursor or not one of ours)."""
        if asked is None:
            return None
        try:
            cursor = decode_cursor(asked)
        except InvalidCursorError:
            return None
        with contextlib.suppress(TimeoutError):  # not caught up in time: missed_since says it cannot resume
            async with asyncio.timeout(self.sessions.settings.resume_wait_seconds):
                await self.sessions.feed.reach(tenant_id, cursor.offset)
        return cursor

    def _first_frames(
        self, subscriber: Subscriber, tenant_id: str, asked: str | None, cursor: Cursor | None
    ) -> bytes | SharedInitialState:
        """What the client gets before the live stream: the ``resumed`` frame (it is positioned for the missed
        updates), or the tenant's initial state at this snapshot (``ws_edge/initial_state.py``). No await here."""
        feed = self.sessions.feed
        position = feed.resume_position(tenant_id, cursor) if cursor is not None else None
        if position is None:
            resumed = False if asked is not None else None
            return self.sessions.initial_states.at_snapshot(tenant_id, feed.cursor_of(tenant_id), resumed)
        missed = subscriber.resume_from(position)  # every update it missed comes next, none left out
        return text_frame(messages.resumed(asked or "", missed).encode())

    # -- writing --------------------------------------------------------------------------------------------------

    def write_now(self, data: bytes, received_at: float) -> bool:
        """For the fan-out (``Subscriber.write_through``): False when the transport's buffer is full (this session
        goes on when it drains) or the connection is closing."""
        if self.phase is not Phase.LIVE:
            return False
        writable = self.write(data)
        if self.latency is not None and received_at:
            self.latency.observe(time.time() - received_at)
        return writable

    def flush(self, now: float) -> None:
        """Write what the connection has yet to get, when nothing is under way for it: after a frame of its own was
        queued, and when its transport drained."""
        subscriber = self.subscriber
        if self.phase is not Phase.LIVE or subscriber is None or self.writing_blocked:
            return
        if subscriber.write_through(now):
            return
        if subscriber.held():
            return  # it goes on when the transport drains; or it is closing
        # Only this leaves it here: its next entries were evicted before it took them. The map afresh, then on.
        if not self.write(encode(self._refreshed(subscriber), self.batched)):
            subscriber.writing(now)

    def _flush_soon(self) -> None:
        """The outbox got a frame of the connection's own (a pong, an answer, a fence): write it after the current
        callback, with whatever else comes meanwhile."""
        asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self.flush(time.monotonic())

    def _refreshed(self, subscriber: Subscriber) -> list[Message]:
        """Its own frames, then a fresh initial_state (``resumed: false``); it goes on from the end of the stream."""
        tenant_id, own = subscriber.tenant_id, subscriber.own_frames()
        shown = subscriber.refilter(subscriber.filter, self.sessions.view.locations(tenant_id))
        return [*own, messages.initial_state(shown, self.sessions.feed.cursor_of(tenant_id), resumed=False)]

    def resume_writing(self) -> None:
        subscriber, now = self.subscriber, time.monotonic()
        if subscriber is not None:
            subscriber.writing(now)  # progress: the sweep's deadline starts again
        if not self.drain_backlog():
            return
        if self.phase is Phase.LIVE and subscriber is not None:
            subscriber.writing(None)
            self.flush(now)

    # -- reading --------------------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.GONE:
            return
        if self._unanswered is not None:  # its upgrade waits for its turn: kept, and no more read until then
            self._unanswered.append(data)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if data[0] == _CLOSE_FRAME_STARTS and self.transport is not None:
            # Most likely the client's close frame: read in the closing budget's turn, and nothing more until then.
            # 10,000 clients closing at once (a dispatch centre's browsers, a load balancer) made 10,000 answers,
            # closes and goodbyes in one turn of the loop: every other tenant's frames came 1 s late. Only this test
            # is left for the turn they all arrive in.
            self.transport.pause_reading()
            self.sessions.closings.run(lambda: self._read_in_turn(data))
            return
        self._read(data)

    def _read_in_turn(self, data: bytes) -> None:
        """What ``data_received`` held back, read now; reading goes on if the connection is not ending."""
        if self.phase is Phase.GONE:
            return
        self._read(data)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _read(self, data: bytes) -> None:
        reader = self.reader
        if self.phase is Phase.CLOSING:  # only its close frame is looked for, in what may still be in flight
            self._read_after_close += len(data)
            if self._read_after_close > MAX_BYTES_AFTER_CLOSE:
                self._log("connection %s dropped: it went on sending after its close")
                self._drop()
                return
        counted = reader.frames
        try:
            frames = reader.feed(data)
        except FramingError as exc:
            if self.phase is Phase.CLOSING:
                self._drop()
            else:
                self.close(exc.code, exc.reason)
            return
        # Every frame counts against the rate, fragments, pings and pongs too: empty continuation frames would
        # otherwise cost the edge without ever making a message, and a flood of pings a pong each.
        if self.phase is not Phase.CLOSING:
            if (refused := self._rule.too_fast(reader.frames - counted, time.monotonic())) is not None:
                self.close(*refused)
                return
        for opcode, payload in frames:
            if opcode == OP_CLOSE:
                self._peer_closed(payload)  # type: ignore[arg-type]
                return
            if self.phase is Phase.CLOSING:
                continue  # nothing a closing client says matters any more, and nothing follows our close frame
            if opcode == OP_BINARY:
                self.close(CLOSE_UNSUPPORTED_DATA, "binary frames are not part of the protocol")
                return
            if opcode == OP_PING:
                if not self.transport_full:  # a client that does not read gets no pong (RFC 6455 5.5.3 allows skipping)
                    self.write(control_frame(OP_PONG, payload))  # type: ignore[arg-type]
            elif opcode == OP_PONG:
                self.liveness.pong_received()
            elif self.phase is Phase.OPENING:
                self._early_message(payload)  # type: ignore[arg-type]
            else:
                self._handle(payload)  # type: ignore[arg-type]

    def _early_message(self, text: str) -> None:
        early = self._early
        if early is None:
            self._early = early = []
        if len(early) >= MAX_EARLY_MESSAGES:
            self.close(CLOSE_POLICY_VIOLATION, "messages sent too fast")
            return
        early.append(text)
        waiter = self._early_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _handle(self, text: str) -> None:
        """A client message on a live session: ping, ``subscribe`` or a fresh ``auth``; anything else gets an error
        frame."""
        subscriber = self.subscriber
        assert subscriber is not None
        if text.strip() == PING_TEXT:
            subscriber.send(messages.PONG)
            return
        try:
            message = bounded_json.loads(text)
        except bounded_json.TooDeepError as exc:
            self.close(CLOSE_INVALID_PAYLOAD, str(exc))
            return
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":  # the origin's clients send {"type": "ping"}; the seed's send "ping"
            subscriber.send(messages.PONG)
        elif kind == "subscribe":
            assert isinstance(message, dict)
            try:
                wanted = parse_subscribe(message)
            except FilterError as exc:
                subscriber.send(messages.error(str(exc)))
                return
            tenant_id, sessions = subscriber.tenant_id, self.sessions
            shown = subscriber.refilter(None if wanted == EVERYTHING else wanted, sessions.view.locations(tenant_id))
            answer = messages.initial_state(shown, sessions.feed.cursor_of(tenant_id), answers=described(wanted))
            subscriber.send(answer)
        elif kind == "fences":
            assert isinstance(message, dict)
            self._fences_in_view(subscriber, message)
        elif kind == "auth":
            previous = self._refreshing
            self._refreshing = asyncio.create_task(self._refresh(text, previous), name="edge-session-refresh")
            self._refreshing.add_done_callback(self._task_ended)
        else:
            subscriber.send(
                messages.error('expected "ping", {"type":"subscribe"}, {"type":"fences"} or {"type":"auth"}')
            )

    def _fences_in_view(self, subscriber: Subscriber, message: dict[str, object]) -> None:
        """``{"type": "fences", "bbox": [w, s, e, n]}``: the tenant's fences in that view as ``geofence_updated``
        frames (``ws_edge/fence_views.py``), at most one answer every ``FENCES_INTERVAL`` seconds."""
        now = time.monotonic()
        if now - self._fences_asked < FENCES_INTERVAL:
            subscriber.send(messages.error(f"fences: at most one request every {FENCES_INTERVAL:g} s"))
            return
        self._fences_asked = now
        try:
            frames = fences_in_view(self.sessions.fences, subscriber.tenant_id, message.get("bbox"))
        except FilterError as exc:
            subscriber.send(messages.error(f"fences: {exc}"))
            return
        for frame in frames:
            subscriber.send(frame)

    async def _refresh(self, text: str, previous: asyncio.Task[None] | None) -> None:
        """A fresh token in-band: of the same tenant and a viewer's, it moves the session's expiry."""
        if previous is not None:  # refreshes take effect in the order they came
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        assert self.claims is not None
        try:
            fresh = await refreshed_claims(text, self.claims, self.sessions.verifier)
        except bounded_json.TooDeepError as exc:
            self.close(CLOSE_INVALID_PAYLOAD, str(exc))
            return
        except ViewerRefusedError as exc:
            self.close(CLOSE_POLICY_VIOLATION, exc.reason)
            return
        if self.phase is Phase.LIVE:
            self.claims = fresh
            self._watch_expiry(fresh)

    # -- timers: the token's expiry, server pings -----------------------------------------------------------------

    def _watch_expiry(self, claims: TokenClaims) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = expires_in(claims, self.sessions.settings.token_expiry_leeway_seconds, time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self.close, CLOSE_UNAUTHENTICATED, "token expired")

    def _ping_later(self) -> None:
        self._liveness = asyncio.get_running_loop().call_later(self.liveness.interval, self._ping)

    def _ping(self) -> None:
        """Ping; a peer that has not answered within the ping timeout is taken for dead."""
        if self.phase is not Phase.LIVE:
            return
        self.write(control_frame(OP_PING))
        self._liveness = asyncio.get_running_loop().call_later(self.liveness.ping_sent(), self._pong_due)

    def _pong_due(self) -> None:
        if self.phase is not Phase.LIVE:
            return
        next_ping = self.liveness.pong_due()
        if next_ping is None:
            self._log("connection %s dropped: no pong within the ping timeout")
            self._drop()
            return
        self._liveness = asyncio.get_running_loop().call_later(next_ping, self._ping)

    # -- closing --------------------------------------------------------------------------------------------------

    def close(self, code: int, reason: str = "") -> None:
        """Close for the edge's reasons: through the subscriber once live, so the fan-out counts it."""
        if self.subscriber is not None and self.subscriber.close_code is None:
            self.subscriber.close(code, reason)  # calls _closed_by_edge
        else:
            self._send_close(code, reason)

    def _closed_by_edge(self) -> None:
        subscriber = self.subscriber
        assert subscriber is not None and subscriber.close_code is not None
        self._send_close(subscriber.close_code, subscriber.close_reason)

    def _send_close(self, code: int, reason: str) -> None:
        frame = edge_close(self.phase, code, reason)
        if frame is None:
            return
        self.phase = Phase.CLOSING
        self.reader.discarding = True  # from now on its data frames are skipped unread
        self.write(frame)
        seconds = self.sessions.settings.slow_consumer_seconds
        self._close_deadline = asyncio.get_running_loop().call_later(seconds, self._close_late, code)

    def _close_late(self, code: int) -> None:
        self._close_deadline = None
        if self.phase is Phase.CLOSING:
            self._log("connection %s dropped: it did not take its close frame (%d) in time", code)
            self._drop()

    def _peer_closed(self, payload: bytes) -> None:
        """The client's close frame (``connection_state.peer_close`` decides the answer), then the server ends the
        TCP connection once what it was handed is written."""
        decided = peer_close(self.phase, payload, self.has_backlog)
        transport = self.transport
        assert transport is not None
        if self.phase is not Phase.CLOSING:
            self.phase = Phase.CLOSING
            subscriber = self.subscriber
            if subscriber is not None:
                subscriber.closed_by_client(decided.code)
        if decided.drop:
            self._drop()
            return
        if decided.answer is not None:
            transport.write(decided.answer)
        transport.close()
        if self._close_deadline is None:  # a peer that does not read what is left is dropped
            self._close_deadline = asyncio.get_running_loop().call_later(
                self.sessions.settings.slow_consumer_seconds, self._close_late, decided.code
            )

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def shed(self) -> None:
        """The server's gate needs this pending connection's place (``locstream/admission.py``)."""
        self._drop()

    def eof_received(self) -> bool:
        """The client ended its side of the TCP connection: it vanished, or it sent its close frame first. The
        connection is dropped in the closing budget's turn (10,000 clients gone at once cost one turn 0.6 s)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False  # ours is closing already: the transport ends it
        self.sessions.closings.run(self._drop)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = Phase.GONE
        self._unanswered = None
        self._not_pending()
        for timer in (self._expiry, self._liveness, self._close_deadline):
            if timer is not None:
                timer.cancel()
        self._expiry = self._liveness = self._close_deadline = None
        self._early = None
        self.forget_backlog()
        for task in (self._opening, self._refreshing):
            if task is not None and not task.done():
                task.cancel()
        subscriber = self.subscriber
        if subscriber is not None:
            subscriber.detach()
            self.sessions.fanout.remove(subscriber)
            if subscriber.close_code is None:  # gone without a close: counted, told in one line now and then
                self.sessions.vanished += 1
                log.debug("connection %s vanished", self.connection_id, extra={"connection_id": self.connection_id})
            else:
                self._log("connection %s closed (code %s)", subscriber.close_code)
        self.sessions.gone(self)
