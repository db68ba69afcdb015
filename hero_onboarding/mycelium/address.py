"""Mycelium addresses: parsing what a person types, and deriving one from a public key.

No I/O. A Mycelium address is an IPv6 address in 400::/7 whose 16 bytes are BLAKE3 of the node's
x25519 public key, first byte forced to 0x04 | (popcount(byte0) & 1) (mycelium >= 0.5.0, its
`address_from_public_key`). One canonical text form (RFC 5952, what `ipaddress`
prints) keys the users table, so `04a1:0::1` and `4a1::1` are one user.
"""

from __future__ import annotations

import ipaddress
from typing import Final

import blake3

from ..errors import InputError

MYCELIUM_NETWORK: Final = ipaddress.IPv6Network("400::/7")
PUBLIC_KEY_BYTES: Final = 32
MAX_INPUT: Final = 100


class AddressError(InputError, ValueError, http_status=400, rpc_code=-32602):
    """What is wrong with a typed address, in words for the person who typed it."""


def parse_address(text: str) -> str:
    """The canonical form of a typed Mycelium address, or AddressError saying why not."""
    value = text.strip()
    if not value:
        raise AddressError("enter your Mycelium address, for example 4a1:2b3c::1")
    if len(value) > MAX_INPUT:
        raise AddressError("that is far too long to be a Mycelium address")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    bare = value.split("/", 1)[0].split("%", 1)[0]
    address = _ipv6(bare)
    if address is None:
        raise AddressError(
            "that is not an IPv6 address; Mycelium addresses look like 4a1:2b3c:4d5e::1"
        )
    if bare != value:
        raise AddressError("give the address alone, without a prefix length or zone")
    if address not in MYCELIUM_NETWORK:
        raise AddressError(
            f"{address} is not a Mycelium address: those are in 400::/7 (they begin 4xx: or 5xx:)"
        )
    return str(address)


def _ipv6(text: str) -> ipaddress.IPv6Address | None:
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def address_of(public_key: bytes) -> str:
    """The Mycelium address a node with this x25519 public key has."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an x25519 public key is {PUBLIC_KEY_BYTES} bytes")
    digest = bytearray(blake3.blake3(public_key).digest(length=16))
    digest[0] = 0x04 | (digest[0].bit_count() & 1)
    return str(ipaddress.IPv6Address(bytes(digest)))


def parse_public_key(text: str) -> bytes:
    """A public key as mycelium prints it (64 hex characters), or ValueError."""
    value = text.strip().lower()
    if len(value) != 2 * PUBLIC_KEY_BYTES or not all(c in "0123456789abcdef" for c in value):
        raise ValueError(f"a public key is {2 * PUBLIC_KEY_BYTES} hexadecimal characters")
    return bytes.fromhex(value)
