"""The opening handshake's rules (RFC 6455, 4.2.1) and answers, on requests as uvicorn hands them over."""

from __future__ import annotations

import base64

import pytest
from websockets.utils import accept_key

from locstream.websocket_upgrade import UpgradeRequest, deflate_accepted, http_error, refusal, switching_protocols

KEY = base64.b64encode(b"0123456789abcdef").decode()


def _request(target: str = "/feed?token=abc", method: str = "GET", **headers: str) -> UpgradeRequest:
    base = {
        "host": "edge:8003",
        "upgrade": "websocket",
        "connection": "keep-alive, Upgrade",
        "sec-websocket-version": "13",
        "sec-websocket-key": KEY,
    }
    base.update({name.replace("_", "-"): value for name, value in headers.items()})
    pairs = [(name.encode(), value.encode()) for name, value in base.items() if value]
    return UpgradeRequest.parse(method, target.encode(), pairs, "127.0.0.1:5000")


def test_a_browser_request_is_answered_101_with_its_accept_key_and_the_chosen_subprotocol() -> None:
    request = _request()
    assert refusal(request) is None
    answer = switching_protocols(request, "locstream.v2").decode()
    assert answer.startswith("HTTP/1.1 101 ") and answer.endswith("\r\n\r\n")
    assert f"Sec-WebSocket-Accept: {accept_key(KEY)}\r\n" in answer and "Sec-WebSocket-Protocol: locstream.v2" in answer
    assert "Sec-WebSocket-Protocol" not in switching_protocols(request, None).decode()


def test_query_names_and_values_are_percent_decoded_and_repeated_headers_joined() -> None:
    request = _request("/a%20b?%74oken=x%2Fy&cursor=c1&cursor=c2")
    assert request.path == "/a b" and request.query == {"token": "x/y", "cursor": "c2"}
    joined = UpgradeRequest.parse(
        "GET",
        b"/",
        [(b"Sec-WebSocket-Protocol", b"locstream.v1"), (b"sec-websocket-protocol", b" locstream.bearer.t ,x")],
        "-",
    )
    assert joined.header_list("sec-websocket-protocol") == ["locstream.v1", "locstream.bearer.t", "x"]
    assert _request(cookie="a=1; access_token=tok").cookies()["access_token"] == "tok"
    assert _request(cookie='bad"cookie').cookies() == {}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"method": "POST"}, 400),
        ({"upgrade": "h2c"}, 400),
        ({"connection": "keep-alive"}, 400),
        ({"sec_websocket_version": "8"}, 426),
        ({"sec_websocket_key": "not base64!"}, 400),
        ({"sec_websocket_key": base64.b64encode(b"short").decode()}, 400),
        ({"sec_websocket_key": ""}, 400),
    ],
)
def test_a_request_breaking_the_rfc_is_refused_with_a_reason(changes: dict[str, str], status: int) -> None:
    method = changes.pop("method", "GET")
    refused = refusal(_request(method=method, **changes))
    assert refused is not None and refused[0] == status and refused[1]
    answer = http_error(*refused).decode()
    assert answer.startswith(f"HTTP/1.1 {status} ") and answer.endswith(refused[1])
    assert f"content-length: {len(refused[1].encode())}" in answer


@pytest.mark.parametrize(
    ("offer", "accepted"),
    [
        ("permessage-deflate", True),
        ("permessage-deflate; client_max_window_bits", True),
        ("permessage-deflate; client_max_window_bits=8", True),
        ('permessage-deflate; client_max_window_bits="12"; server_no_context_takeover', True),
        ("permessage-deflate; server_max_window_bits=15; client_no_context_takeover", True),
        ("permessage-deflate; client_max_window_bits=0", False),  # RFC 7692 7.1.2.2: 8 to 15
        ("permessage-deflate; client_max_window_bits=99", False),
        ("permessage-deflate; client_max_window_bits=08", False),
        ("permessage-deflate; client_max_window_bits=-9", False),
        ("permessage-deflate; server_max_window_bits", False),  # needs a value
        ("permessage-deflate; server_max_window_bits=8", False),  # the server compresses with 15
        ("permessage-deflate; server_no_context_takeover=1", False),  # takes no value
        ("permessage-deflate; client_max_window_bits; client_max_window_bits", False),
        ("permessage-deflate; x_unknown", False),
        ("permessage-deflate; client_max_window_bits=99, permessage-deflate", True),  # the next offer is valid
    ],
)
def test_deflate_offers_are_accepted_only_with_valid_parameters(offer: str, accepted: bool) -> None:
    assert deflate_accepted(_request(sec_websocket_extensions=offer)) is accepted
