"""Every live-feed session of one edge node (``Sessions``, the registry): what they share (the feed, the fan-out,
the view, the verifier, the fences), the server's gate they are pending in until their token is verified, the
budgets a crowd's openings and closings are spread with (``ws_edge/turn_budget.py``,
``locstream.work_slots.TurnsPerTenant``), and the set a shutdown closes. ``take_over`` is what
``locstream/serve.py`` asks for each WebSocket upgrade request (``app.state.websocket_takeover``); each connection
is a ``ClientSession`` (``ws_edge/session.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Histogram

from domain.geofencing import FenceBook
from locstream.admission import PendingGate
from locstream.auth import TokenVerifier
from locstream.websocket_upgrade import UpgradeRequest
from locstream.work_slots import TurnsPerTenant
from schemas.contracts import FEED_PATH
from ws_edge.fanout import Fanout
from ws_edge.initial_state import InitialStates
from ws_edge.live_feed import LiveFeed
from ws_edge.metrics import SAMPLE_ONE_CONNECTION_IN
from ws_edge.replay_session import is_replay
from ws_edge.session import ClientSession
from ws_edge.settings import EdgeSettings
from ws_edge.turn_budget import TurnBudget
from ws_edge.view import LiveView

log = logging.getLogger(__name__)


OPENINGS_PER_TENANT = 16
# Per turn of the event loop (``ws_edge/turn_budget.py``): a few milliseconds of a crowd's work each. A live frame
# takes about ten turns from the broker's answer to a client's socket (aiokafka's fetch and its tasks, the feed, the
# fan-out), so what one turn costs, the frame waits ten times: 200 closings a turn (14 ms) made another tenant's
# frames 250-420 ms late while 10,000 clients closed, 50 (3.5 ms) 45-110 ms. About: upgrades answered (~90 µs each,
# their tasks' first steps ~130 µs more in the next turn), and connections ended after their client's close frame
# or end (~70 µs each: the answer, the close, the goodbye).
HANDSHAKES_PER_TURN = 16
CLOSINGS_PER_TURN = 50


class Sessions:
    """Every live-feed session of one edge node: what they share, the server's gate they are pending in until
    their token is verified, and the set a shutdown closes. ``take_over`` is what ``locstream/serve.py`` asks for
    each WebSocket upgrade request (``app.state.websocket_takeover``)."""

    def __init__(
        self,
        settings: EdgeSettings,
        feed: LiveFeed,
        fanout: Fanout,
        view: LiveView,
        verifier: TokenVerifier,
        fences: FenceBook | None,
        latency: Histogram,
    ) -> None:
        self.settings = settings
        self.feed = feed
        self.fanout = fanout
        self.view = view
        self.verifier = verifier
        self.fences = fences
        self.latency = latency  # observed by one connection in SAMPLE_ONE_CONNECTION_IN
        self.initial_states = InitialStates(view)
        # 10,000 connections of one tenant at once made the edge's loop run hundreds of openings between two turns of
        # anything else: another tenant's live frames came a second late.
        self.openings = TurnsPerTenant(OPENINGS_PER_TENANT)
        self.handshakes = TurnBudget("upgrades answered", HANDSHAKES_PER_TURN)
        self.closings = TurnBudget("connections ended", CLOSINGS_PER_TURN)
        self.access_log = True
        self.connections: set[ClientSession] = set()  # every one, opening, live or closing
        # Connections gone without a close frame since ``report_vanished`` last said so: 10,000 dropped at once
        # logged a line each, 0.24 s of the loop in one turn (24 µs a line).
        self.vanished = 0
        self._none_left: asyncio.Event | None = None  # while closing them all
        self.started = 0
        self.gate: PendingGate | None = None  # the server's, given with each upgrade request
        self.pending_seconds = 0.0

    def take_over(self, request: UpgradeRequest, gate: PendingGate, pending_seconds: float) -> ClientSession | None:
        """A session for a live-feed upgrade request; None for any other (a paced replay goes through the app)."""
        if request.path != FEED_PATH or is_replay(request.query):
            return None
        self.gate, self.pending_seconds = gate, pending_seconds
        self.started += 1
        sampled = self.started % SAMPLE_ONE_CONNECTION_IN == 1
        session = ClientSession(self, request, self.latency if sampled else None)
        self.connections.add(session)
        return session

    def report_vanished(self) -> None:
        """One INFO line for the connections that went without a close since the last one, if any."""
        if self.vanished:
            log.info("%d connection(s) gone without a close frame", self.vanished)
            self.vanished = 0

    def gone(self, session: ClientSession) -> None:
        self.connections.discard(session)
        if not self.connections and self._none_left is not None:
            self._none_left.set()

    async def close_all(self, code: int, reason: str, within: float) -> None:
        """Close every session; those that have not completed the close handshake ``within`` seconds are dropped."""
        self._none_left = asyncio.Event()
        for session in list(self.connections):
            session.close(code, reason)
        if self.connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._none_left.wait()
        for session in list(self.connections):
            session.shed()
