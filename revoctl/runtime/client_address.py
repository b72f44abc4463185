"""The client's address behind proxies: ``[gateway] trusted_proxies``.

A proxy that forwards a request appends the address it was called from to
``X-Forwarded-For`` (or as the ``for=`` of an element of ``Forwarded``, RFC 7239);
everything to the left of that came from further away, and the client may have
written it. So the headers are read only when the TCP peer is a trusted proxy, and
then from the right: trusted hops are passed over, and the first untrusted hop is the
client. When every hop is trusted, the furthest one is.

Nothing here raises. A hop that cannot be read (garbage, an empty element, ``unknown``,
an obfuscated ``_name``, a ``Forwarded`` element with no ``for=``) ends the walk, and the
last trusted address passed is the client (the peer, when no hop was passed); so does
reaching `MAX_HOPS` trusted hops. A request whose two headers name different clients is
believed in neither (a proxy writes one of them, so the other came from the client), and
the peer is the client. The worst a header can do is make a proxy's own address the
client, which is one bucket for all who try it.

Headers are split on commas before anything else, quoted strings included: a client
cannot open a quote that swallows what the proxy appended after it.

`ClientAddress` writes the answer into the ASGI scope's ``client``, as uvicorn's own
proxy middleware does (``revoctl serve`` turns uvicorn's off), so the ``per_ip`` rules,
the access log and the request rows all see one address. It is installed only when
``trusted_proxies`` names something: without it, a request costs nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

MAX_HOPS = 16
"""The most hops read from the right of a header: a longer chain of trusted proxies ends
at the 16th."""

FORWARDED_FOR = b"x-forwarded-for"
FORWARDED = b"forwarded"


def client_address(
    peer: str, headers: Iterable[tuple[bytes, bytes]], trusted: Sequence[Network]
) -> str:
    """The client's address for a request from ``peer`` with ``headers`` (ASGI's: lower-case
    names, in order): ``peer`` itself unless it is in ``trusted``."""
    address = parse_node(peer)
    if address is None or not _is_trusted(address, trusted):
        return peer
    values: dict[bytes, list[bytes]] = {FORWARDED_FOR: [], FORWARDED: []}
    for name, value in headers:
        if name in values:
            values[name].append(value)
    found = {_walk(_hops(name, lines), address, trusted) for name, lines in values.items() if lines}
    return str(found.pop()) if len(found) == 1 else str(address)


def parse_node(text: str) -> Address | None:
    """The address in one hop (``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``,
    ``"[2001:db8::1]:80"``), an IPv4-mapped IPv6 address as IPv4; None when there is none."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
    elif text.count(":") == 1:
        host = text.partition(":")[0]
    else:
        host = text
    try:
        address = ip_address(host)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _hops(name: bytes, lines: list[bytes]) -> Iterator[Address | None]:
    """The hops a header names, nearest first, at most `MAX_HOPS` of them."""
    elements = b",".join(lines).decode("latin-1").rsplit(",", MAX_HOPS)
    for element in reversed(elements[-MAX_HOPS:]):
        yield parse_node(element) if name == FORWARDED_FOR else _forwarded_for(element)


def _forwarded_for(element: str) -> Address | None:
    """The address in a ``Forwarded`` element's ``for=`` pair (RFC 7239), if it names one."""
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == "for":
            return parse_node(value)
    return None


def _walk(hops: Iterator[Address | None], peer: Address, trusted: Sequence[Network]) -> Address:
    """The first untrusted hop; the last trusted address passed when a hop cannot be read."""
    passed = peer
    for hop in hops:
        if hop is None:
            return passed
        if not _is_trusted(hop, trusted):
            return hop
        passed = hop
    return passed


def _is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


class ClientAddress:
    """ASGI middleware: the scope's ``client`` becomes the address `client_address` finds."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            set_client(scope, self.trusted)
        await self.app(scope, receive, send)


def set_client(scope: Scope, trusted: Sequence[Network]) -> None:
    """Write the address `client_address` finds into the HTTP ``scope``'s ``client``
    (`ClientAddress`, and ``revoctl.asgi`` in a user's app)."""
    peer = scope.get("client")
    if peer:
        found = client_address(peer[0], scope["headers"], trusted)
        if found != peer[0]:
            scope["client"] = (found, 0)  # the client's port is not forwarded
