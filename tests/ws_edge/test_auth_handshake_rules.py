"""The auth handshake's pure rules, without an edge: which origins may connect, where a token and the protocol
version come from, and what an auth message must be (the edge end to end: test_auth_handshake.py)."""

from __future__ import annotations

import pytest

from locstream import bounded_json
from schemas.ws import SUBPROTOCOL_TOKEN_PREFIX, SUBPROTOCOL_V1, SUBPROTOCOL_V2
from ws_edge.auth_handshake import MAX_AUTH_MESSAGE_BYTES, Offered, auth_message, offered, origin_allowed


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        ("https://maps.example.test", "maps.example.test", [], True),  # the edge's own origin
        ("https://MAPS.example.test", "maps.example.test", [], True),  # hosts are case-insensitive
        ("https://maps.example.test:8443", "maps.example.test:8443", [], True),
        ("https://maps.example.test:8443", "maps.example.test", [], False),  # another port is another origin
        ("https://evil.example", "maps.example.test", [], False),
        ("https://evil.example", None, [], False),  # no Host: only a listed origin
        ("https://ops.example", "maps.example.test", ["https://ops.example"], True),
        ("https://ops.example.evil", "maps.example.test", ["https://ops.example"], False),  # listed exactly
        ("null", "maps.example.test", [], False),  # a sandboxed frame or a file
        ("https://anyone.example", "maps.example.test", ["*"], True),
    ],
)
def test_only_the_edges_own_or_a_listed_origin_may_connect(
    origin: str, host: str | None, allowed: list[str], expected: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is expected


def test_the_token_comes_from_the_query_then_a_subprotocol_then_the_cookie() -> None:
    bearer = f"{SUBPROTOCOL_TOKEN_PREFIX}from-subprotocol"
    cookie = {"access_token": "from-cookie"}
    assert offered({"token": "from-query"}, [bearer], cookie).token == "from-query"
    assert offered({}, [bearer], cookie).token == "from-subprotocol"
    assert offered({}, [], cookie).token == "from-cookie"
    assert offered({"token": ""}, [], {}).token is None  # an empty token is none: the auth message is awaited


def test_the_version_comes_from_the_subprotocol_or_the_query_and_only_the_version_is_echoed() -> None:
    bearer = f"{SUBPROTOCOL_TOKEN_PREFIX}secret"
    assert offered({}, [bearer, SUBPROTOCOL_V2], {}) == Offered("secret", 2, SUBPROTOCOL_V2, None)
    assert offered({"protocol": "2", "cursor": "c1"}, [], {}) == Offered(None, 2, None, "c1")
    assert offered({"protocol": "2"}, [SUBPROTOCOL_V1], {}).protocol == 1  # the subprotocol chosen wins
    assert offered({}, [bearer], {}).subprotocol is None  # a token is never echoed
    assert offered({"protocol": "3"}, [], {}).protocol == 1


def test_an_auth_message_gives_its_token_and_cursor_or_a_reason() -> None:
    assert auth_message('{"type": "auth", "token": "t"}') == ("t", None)
    assert auth_message('{"type": "auth", "token": "t", "cursor": "c"}') == ("t", "c")
    assert auth_message('{"type": "auth", "token": "t", "cursor": 7}') == ("t", None)  # not a cursor: none
    for bad in ('{"type": "ping"}', '{"type": "auth", "token": 5}', "[]", "auth", '{"type": "auth"}'):
        with pytest.raises(ValueError):
            auth_message(bad)
    with pytest.raises(ValueError, match="too large"):
        auth_message('{"type": "auth", "token": "' + "x" * MAX_AUTH_MESSAGE_BYTES + '"}')
    with pytest.raises(bounded_json.TooDeepError):
        auth_message('{"type": "auth", "token": "t", "x": ' + "[" * 100 + "]" * 100 + "}")
