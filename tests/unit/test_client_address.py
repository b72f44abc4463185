"""The client address behind trusted proxies: the header parsing, the walk from the right,
every malformed header falling back without an error, the setting's validation, and the
middleware's place in the app (the access log and ``per_ip`` see the same address).

The same with a real HAProxy in front of ``revoctl serve`` is ``tests/e2e/test_behind_proxy.py``.
"""

from __future__ import annotations

import logging
import re
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from revoctl.core.gateway.settings import GatewayConfig
from revoctl.runtime.client_address import MAX_HOPS, ClientAddress, client_address, parse_node
from revoctl.runtime.middleware import AccessLog

PROXIES = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
BALANCER = "10.0.0.2"


def through(*headers: tuple[str, str], peer: str = BALANCER) -> str:
    raw = [(name.lower().encode(), value.encode("latin-1")) for name, value in headers]
    return client_address(peer, raw, PROXIES)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("203.0.113.7", IPv4Address("203.0.113.7")),
        (" 203.0.113.7 ", IPv4Address("203.0.113.7")),
        ("203.0.113.7:47011", IPv4Address("203.0.113.7")),
        ('"203.0.113.7:47011"', IPv4Address("203.0.113.7")),
        ("2001:db8::7", IPv6Address("2001:db8::7")),
        ("[2001:db8::7]", IPv6Address("2001:db8::7")),
        ('"[2001:db8::7]:4711"', IPv6Address("2001:db8::7")),
        ("[2001:db8::7]:_port", IPv6Address("2001:db8::7")),
        ("::ffff:203.0.113.7", IPv4Address("203.0.113.7")),
        ("unknown", None),
        ("_hidden", None),
        ("_SEVKISEK", None),
        ("", None),
        ('"', None),
        ("[2001:db8::7", None),
        ("[2001:db8::7]x", None),
        ("[not-an-address]:80", None),
        ("300.1.1.1", None),
        ("203.0.113.7:80:90", None),
        ("<script>", None),
        ("\x00\xff", None),
    ],
)
def test_a_hop_is_an_address_with_or_without_port_brackets_and_quotes(
    text: str, address: Any
) -> None:
    assert parse_node(text) == address


def test_an_untrusted_peer_is_the_client_whatever_its_headers_say() -> None:
    spoofed = ("X-Forwarded-For", "198.51.100.1"), ("Forwarded", "for=198.51.100.2")
    assert through(*spoofed, peer="192.0.2.9") == "192.0.2.9"
    assert through(peer="192.0.2.9") == "192.0.2.9"


def test_a_trusted_peer_without_headers_is_the_client() -> None:
    assert through() == BALANCER


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    # the client wrote the first two; the balancer appended the address it saw
    assert through(("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 203.0.113.7")) == "203.0.113.7"
    # two proxies of ours: the inner one appended the outer one
    assert through(("X-Forwarded-For", "1.1.1.1, 203.0.113.7, 10.9.9.9")) == "203.0.113.7"


def test_header_lines_are_one_list_in_order() -> None:
    lines = ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.7, 10.1.1.1")
    assert through(*lines) == "203.0.113.7"


def test_every_hop_trusted_makes_the_furthest_the_client() -> None:
    assert through(("X-Forwarded-For", "10.3.3.3, 10.1.1.1")) == "10.3.3.3"


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "unknown",
        "_hidden",
        "",
        " , ",
        "1.1.1.1,",
        "1.1.1.1, [2001:db8::1",
        "1.1.1.1, 203.0.113.7:80:90",
        "\x01\x02\x7f",
        "1.1.1.1" + ",1.1.1.1" * 10_000 + ",junk",
    ],
)
def test_a_hop_that_cannot_be_read_leaves_the_last_trusted_address_passed(value: str) -> None:
    assert through(("X-Forwarded-For", value)) == BALANCER
    assert through(("X-Forwarded-For", value + ", 10.4.4.4")) == "10.4.4.4"


def test_a_spoofed_hop_beyond_the_real_client_is_never_read() -> None:
    assert through(("X-Forwarded-For", "junk, unknown, 203.0.113.7")) == "203.0.113.7"
    # an open quote cannot swallow what the balancer appended after it
    forwarded = 'for="198.51.100.1, for=203.0.113.7'
    assert through(("Forwarded", forwarded)) == "203.0.113.7"


def test_a_walk_stops_after_max_hops_trusted_ones() -> None:
    chain = ", ".join(f"10.0.0.{n}" for n in range(MAX_HOPS + 5, 0, -1))
    assert through(("X-Forwarded-For", "203.0.113.7, " + chain)) == f"10.0.0.{MAX_HOPS}"
    shorter = ", ".join(f"10.0.0.{n}" for n in range(MAX_HOPS - 1, 0, -1))
    assert through(("X-Forwarded-For", "203.0.113.7, " + shorter)) == "203.0.113.7"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("for=203.0.113.7", "203.0.113.7"),
        ('For="203.0.113.7:4711";proto=https;by=10.0.0.2', "203.0.113.7"),
        ('for=198.51.100.1, for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ("for=203.0.113.7, for=10.7.7.7;proto=http", "203.0.113.7"),
        ("for=unknown", BALANCER),
        ("for=_hidden, for=10.7.7.7", "10.7.7.7"),
        ("proto=https;by=10.0.0.2", BALANCER),
        ("for", BALANCER),
        ("for=", BALANCER),
        (";;;,,,", BALANCER),
    ],
)
def test_forwarded_is_read_as_rfc_7239_says(value: str, client: str) -> None:
    assert through(("Forwarded", value)) == client


def test_both_headers_are_believed_only_when_they_agree() -> None:
    agreeing = ("X-Forwarded-For", "203.0.113.7"), ("Forwarded", "for=203.0.113.7")
    assert through(*agreeing) == "203.0.113.7"
    # the balancer writes X-Forwarded-For; a Forwarded the client sent rides along
    disagreeing = ("X-Forwarded-For", "203.0.113.7"), ("Forwarded", "for=198.51.100.1")
    assert through(*disagreeing) == BALANCER


def test_ipv6_peers_and_ipv4_mapped_ones_are_matched() -> None:
    assert through(("X-Forwarded-For", "203.0.113.7"), peer="fd00::5") == "203.0.113.7"
    assert through(("X-Forwarded-For", "203.0.113.7"), peer="::ffff:10.0.0.2") == "203.0.113.7"
    assert through(("X-Forwarded-For", "203.0.113.7"), peer="2001:db8::5") == "2001:db8::5"


def test_a_peer_that_is_no_address_is_left_as_it_is() -> None:
    assert through(("X-Forwarded-For", "203.0.113.7"), peer="testclient") == "testclient"


@pytest.mark.parametrize(
    ("entries", "networks"),
    [
        ([], ()),
        (["10.0.0.0/8", "192.0.2.1", "fd00::/8"], ("10.0.0.0/8", "192.0.2.1/32", "fd00::/8")),
        ("10.0.0.0/8, 192.0.2.1", ("10.0.0.0/8", "192.0.2.1/32")),
    ],
)
def test_the_setting_takes_addresses_and_cidrs(entries: Any, networks: tuple[str, ...]) -> None:
    config = GatewayConfig(trusted_proxies=entries)
    assert tuple(map(str, config.trusted_networks())) == networks


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is neither an IP address nor a CIDR"),
        ("localhost", "'localhost' is neither an IP address nor a CIDR"),
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set: 10.0.0.0/8?"),
        ("", "'' is neither"),
    ],
)
def test_an_invalid_entry_is_a_configuration_error(entry: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        GatewayConfig(trusted_proxies=[entry])


def test_an_invalid_entry_exits_2_from_the_cli(cli: Any, tmp_path: Any) -> None:
    config = tmp_path / "revoctl.toml"
    config.write_text('[gateway]\ntrusted_proxies = ["10.0.0.0/8", "10.1.2.3/8"]\n')
    shown = cli("--config", str(config), "config", "show")
    assert shown.exit_code == 2
    assert "gateway.trusted_proxies: '10.1.2.3/8' has host bits set: 10.0.0.0/8?" in shown.stderr


async def test_the_middleware_gives_the_app_and_its_log_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def echo(request: Request) -> PlainTextResponse:
        assert request.client is not None
        return PlainTextResponse(request.client.host)

    app = ClientAddress(AccessLog(Starlette(routes=[Route("/", echo)])), trusted=PROXIES)
    transport = httpx.ASGITransport(app=app, client=(BALANCER, 50000))
    with caplog.at_level(logging.INFO, logger="revoctl.access"):
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            relayed = await client.get("/", headers={"x-forwarded-for": "1.1.1.1, 203.0.113.7"})
            direct = await client.get("/")
    assert (relayed.text, direct.text) == ("203.0.113.7", BALANCER)
    logged = [record.__dict__["client"] for record in caplog.records]
    assert logged == ["203.0.113.7", BALANCER]
