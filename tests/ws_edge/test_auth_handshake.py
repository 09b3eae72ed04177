"""A WebSocket with a bad token or a role that may not watch is closed with 1008 before any data frame."""

from __future__ import annotations

import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from schemas.claims import Role
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

WS_PATH = "/api/v1/field-service/ws/technician-locations"


async def test_bad_tokens_are_closed_with_1008_before_any_data(stack: Stack) -> None:
    edge = await stack.start("ws-edge")
    secret = stack.env["LOCSTREAM_JWT_SECRET"]
    valid = jwt.decode(stack.token("tenant-a"), options={"verify_signature": False})
    no_tenant = {k: v for k, v in valid.items() if k != "tenant_id"}
    bad_queries = {
        "missing": "",
        "empty": "?token=",
        "garbage": "?token=abc.def.ghi",
        "expired": f"?token={stack.token('tenant-a', ttl=-60)}",
        "forged": f"?token={jwt.encode(valid, 'x' * 40, algorithm='HS256')}",
        "alg none": f"?token={jwt.encode(valid, None, algorithm='none')}",
        "no tenant": f"?token={jwt.encode(no_tenant, secret, algorithm='HS256')}",
        "technician role": f"?token={stack.token('tenant-a', Role.TECHNICIAN, sub='tech-1')}",
        "device gateway role": f"?token={stack.token('tenant-a', Role.DEVICE_GATEWAY)}",
    }
    for case, query in bad_queries.items():
        async with websockets.connect(f"{edge.ws_url}{WS_PATH}{query}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                frame = await ws.recv()
                pytest.fail(f"{case}: got a data frame {frame!r}")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, case
    # The same edge accepts a valid dispatcher: the cases above were refused for their token alone.
    async with websockets.connect(f"{edge.ws_url}{WS_PATH}?token={stack.token('tenant-a')}") as ws:
        assert '"connected"' in str(await ws.recv())
