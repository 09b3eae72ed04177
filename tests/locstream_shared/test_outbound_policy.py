"""The SSRF guard (``locstream.outbound_policy``) on the attempts issue 33 lists and their variants. Private and
link-local addresses are only ever answered by a resolver stub here: the tests assert that no socket is opened."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from locstream.outbound_policy import (
    IPAddress,
    RefusedTarget,
    Target,
    check_url,
    refusal,
    resolve_pinned,
)

LOOPBACK_ALLOWED = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


class StubResolver:
    """Answers names from a table, each lookup's answer in turn (a name can change its answer), and counts."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.lookups.append(host)
        turn = self.answers[host][min(len(self.lookups) - 1, len(self.answers[host]) - 1)]
        return [ipaddress.ip_address(address) for address in turn]


@pytest.fixture(autouse=True)
def no_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any socket, connection or system lookup during a test fails it: the guard decides on answers alone."""
    opened: list[str] = []

    def refuse(name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            opened.append(name)
            raise AssertionError(f"{name} called by the outbound policy")

        return call

    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, refuse(name))
    for name in ("connect", "connect_ex", "sendto"):  # the event loop's own socket pair is made before, connected
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    yield opened
    assert opened == []


async def pinned(url: str, resolver: StubResolver | None = None, **options: bool) -> IPAddress:
    target = check_url(url, **options)
    return await resolve_pinned(target, resolver or StubResolver({}))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "https only"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("https://0x7f.1/", "loopback"),
        ("https://0177.0.0.1/", "loopback"),
        ("https://127.1/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "IPv4-mapped address: a loopback"),
        ("https://[::ffff:a9fe:a9fe]/", "IPv4-mapped address: a link-local"),
        ("https://[64:ff9b::a00:1]/", "carries an IPv4 address"),
        ("https://[2002:7f00:1::]/", "carries an IPv4 address"),
        ("https://10.0.0.1/", "public internet"),
        ("https://172.16.5.4/", "public internet"),
        ("https://192.168.1.1/", "public internet"),
        ("https://100.64.0.1/", "public internet"),  # shared CGNAT space
        ("https://[fc00::1]/", "public internet"),
        ("https://[fe80::1]/", "link-local"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://[::]/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://255.255.255.255/", "public internet"),
    ],
)
async def test_addresses_off_the_public_internet_are_refused_however_they_are_spelt(url: str, reason: str) -> None:
    with pytest.raises(RefusedTarget, match=reason):
        await pinned(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://user:secret@hooks.example.com/", "credentials"),
        ("https://hooks.example.com@127.0.0.1/", "credentials"),
        ("ftp://hooks.example.com/", "https only"),
        ("file:///etc/passwd", "https only"),
        ("https:///path-only", "no host"),
        ("https://hooks.example.com:0/", "no such port"),
        ("https://hooks.example.com:99999/", "not a URL"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://999.1.1.1/", "no IPv4 address"),
        ("https://hooks example.com/", "spaces"),
        ("https://hooks.example.com\\@127.0.0.1/", "backslashes"),
        ("https://" + "a" * 64 + ".example.com/", "not a host name"),
        ("https://exa_mple!.com/", "not a host name"),
        ("https://example.com/" + "x" * 2_100, "longer than"),
    ],
)
def test_urls_that_are_not_plain_https_to_a_host_are_refused(url: str, reason: str) -> None:
    with pytest.raises(RefusedTarget, match=reason):
        check_url(url)


async def test_a_name_is_refused_when_any_address_it_resolves_to_is_refused() -> None:
    resolver = StubResolver(
        {"internal.example.com": [["10.0.0.1"]], "mixed.example.com": [["93.184.215.14", "10.0.0.1"]]}
    )
    with pytest.raises(RefusedTarget, match=r"internal\.example\.com is 10\.0\.0\.1"):
        await pinned("https://internal.example.com/hook", resolver)
    with pytest.raises(RefusedTarget, match=r"is 10\.0\.0\.1"):
        await pinned("https://mixed.example.com/hook", resolver)
    with pytest.raises(RefusedTarget, match="no address"):
        await pinned("https://nothing.example.com/", StubResolver({"nothing.example.com": [[]]}))


async def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_to_connect_to() -> None:
    # A rebinding name: public on the first lookup, loopback on the next. The guard looks once and pins that answer.
    resolver = StubResolver({"rebind.example.com": [["93.184.215.14"], ["127.0.0.1"]]})
    address = await pinned("https://rebind.example.com/hook", resolver)
    assert address == ipaddress.ip_address("93.184.215.14") and resolver.lookups == ["rebind.example.com"]
    again = StubResolver({"rebind.example.com": [["127.0.0.1"], ["93.184.215.14"]]})
    with pytest.raises(RefusedTarget, match="loopback"):
        await pinned("https://rebind.example.com/hook", again)
    assert again.lookups == ["rebind.example.com"]


async def test_the_operators_allow_list_lets_a_local_receiver_in_and_http_only_when_allowed() -> None:
    target = check_url("http://127.0.0.1:8123/hook?x=1", allow_http=True)
    assert target == Target("http", "127.0.0.1", 8123, "/hook?x=1", ipaddress.ip_address("127.0.0.1"))
    assert target.authority == "127.0.0.1:8123"
    assert await resolve_pinned(target, StubResolver({}), LOOPBACK_ALLOWED) == ipaddress.ip_address("127.0.0.1")
    ipv6 = check_url("https://[::1]/h")
    assert ipv6.authority == "[::1]" and await resolve_pinned(ipv6, StubResolver({}), LOOPBACK_ALLOWED)
    with pytest.raises(RefusedTarget, match="public internet"):  # the allow-list holds loopback, not 10/8
        await resolve_pinned(check_url("https://10.1.2.3/"), StubResolver({}), LOOPBACK_ALLOWED)


def test_a_public_name_is_kept_as_its_ascii_form_for_tls_and_the_host_header() -> None:
    target = check_url("HTTPS://Hooks.Bücher.Example/path")
    assert (target.host, target.port, target.target, target.address) == (
        "hooks.xn--bcher-kva.example",
        443,
        "/path",
        None,
    )
    assert target.authority == "hooks.xn--bcher-kva.example"


@given(st.ip_addresses())
def test_an_address_passes_only_when_it_is_global_and_carries_no_other(address: IPAddress) -> None:
    carried = isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None
        or any(
            address in ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
        )
    )
    if carried:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        expected_pass = mapped is not None and mapped.is_global and not mapped.is_multicast
    else:
        expected_pass = address.is_global and not address.is_multicast
    assert (refusal(address) is None) == expected_pass
