"""Which addresses a merchant's SMTP server may have, and the names that lead to them."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from ellity.adapters.public_address import (
    AddressRefused,
    Resolver,
    Unresolvable,
    checked_addresses,
    is_public,
)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2a00:1450:4001:82b::200e", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),  # loopback
        ("127.8.9.10", False),
        ("10.1.2.3", False),  # private
        ("172.16.5.4", False),
        ("192.168.1.20", False),
        ("100.64.0.1", False),  # shared address space (carrier-grade NAT)
        ("169.254.169.254", False),  # link-local: the cloud metadata service
        ("0.0.0.0", False),  # noqa: S104 - unspecified: this host
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("192.0.2.10", False),  # documentation
        ("::1", False),
        ("::", False),
        ("fc00::25", False),  # unique local
        ("fd12:3456::1", False),
        ("fe80::1", False),  # link-local
        ("ff02::1", False),  # multicast
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2001:db8::1", False),  # documentation
    ],
)
def test_only_addresses_on_the_public_internet_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def answering(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(addresses)

    return resolve


async def test_every_address_of_a_name_is_checked_not_only_the_first() -> None:
    with pytest.raises(AddressRefused):
        await checked_addresses(
            "mail.example.cz", 25, resolve=answering("8.8.8.8", "10.0.0.7"), allow_private=False
        )


async def test_a_deployment_that_allows_private_addresses_gets_them_in_order() -> None:
    addresses = await checked_addresses(
        "relay.local", 25, resolve=answering("10.0.0.7", "::1"), allow_private=True
    )
    assert addresses == ["10.0.0.7", "::1"]


async def test_a_name_without_addresses_is_unresolvable_even_when_private_ones_are_allowed() -> (
    None
):
    with pytest.raises(Unresolvable):
        await checked_addresses("nowhere.invalid", 25, resolve=answering(), allow_private=True)
