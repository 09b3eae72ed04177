"""The WebSocket edge: a per-tenant live view fed by Kafka, fanned out to dispatch maps (protocol: docs/edge.md).

- ``view.py``: the in-memory view per tenant (the projector's apply rule), stale technicians;
- ``live_feed.py``: bootstrap from the projector's table and offsets, then its own Kafka consumer; cursors;
- ``resume_buffer.py``: per tenant (``TenantResumeBuffer``), the recent updates every client reads from and resumes
  from;
- ``fanout.py``: the subscribers per tenant, their filters and slow-consumer limits;
- ``outbox.py``: a connection's position in the resume buffer and its own frames; ``conflation.py``: what a client
  that is behind gets instead of every update;
- ``filters.py``: ``subscribe`` filters (bbox, technician ids, status);
- ``auth_handshake.py``: Origin, token sources and roles, before any data frame; in-band token refreshes;
- ``session.py``: one live-feed connection from its upgrade request to its close, as one protocol object with
  callbacks (no task in the steady state); ``Sessions``, every session of the edge, which ``locstream/serve.py``
  hands the upgrade requests to;
- ``initial_state.py``: a tenant's initial_state, encoded in slices once per snapshot, deflated once;
- ``wire.py``: frames encoded once (``encode``); the paced replays' ASGI wire, closes bounded by the write deadline;
  ``replay_session.py``: a paced replay of the history (``replay/``) on the same URL;
- ``messages.py``: the messages, encoded once per tenant; ``framing.py``: WebSocket framing (RFC 6455) both ways,
  permessage-deflate without context takeover;
  ``metrics.py``: ``/metrics``;
- ``map_page.py``: ``/map`` and ``/client/...``, files of ``web/`` (the JS client, its React hook, the map page).
"""
