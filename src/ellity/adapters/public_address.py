"""Which network addresses Ellity may connect to on a merchant's behalf.

A host name a merchant types (the SMTP server) must not let them reach the deployment's own
network: loopback, private, link-local, shared, reserved, multicast and unspecified addresses
are refused, also when they hide inside an IPv6 address (IPv4-mapped, NAT64, 6to4). The name
is resolved once, every address it resolves to is checked, and the connection is made to a
checked address, never to the name again (a second lookup could answer differently).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

#: The addresses a host name resolves to (numeric strings), in the resolver's order.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(Exception):
    """The host resolves to an address Ellity does not connect to."""


class Unresolvable(Exception):
    """The host name resolves to no address."""


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The operating system's answer (``getaddrinfo``), without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: IpAddress) -> bool:
    """True only for an address on the public internet."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return is_public(embedded)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def _embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


async def checked_addresses(
    host: str, port: int, *, resolve: Resolver, allow_private: bool
) -> list[str]:
    """The addresses to connect to for ``host``, each one checked.

    Raises ``Unresolvable`` when the name resolves to nothing, and ``AddressRefused`` when
    any address it resolves to is not public (unless ``allow_private``, for a deployment
    that relays through a local server).
    """
    try:
        found = await resolve(host, port)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError; an overlong label too
        raise Unresolvable(host) from None
    addresses: list[str] = []
    for text in found:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise Unresolvable(host) from None
        if not allow_private and not is_public(address):
            raise AddressRefused(host)
        addresses.append(text)
    if not addresses:
        raise Unresolvable(host)
    return addresses


async def connect_first(addresses: Sequence[str], port: int, *, each: float) -> socket.socket:
    """A connected TCP socket to the first of ``addresses`` that answers within ``each``
    seconds.

    Raises ``OSError`` (``TimeoutError`` included) when none can be reached.
    """
    loop = asyncio.get_running_loop()
    failure: OSError = OSError("no address to connect to")
    for address in addresses:
        family, kind, proto, _, sockaddr = (
            await loop.getaddrinfo(
                address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(each):
                await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise failure
