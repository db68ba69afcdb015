"""Mycelium addresses: parsing what people type, and deriving one from a public key."""

from __future__ import annotations

import ipaddress

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hero_onboarding.mycelium.address import (
    AddressError,
    address_of,
    parse_address,
    parse_public_key,
)
from hero_onboarding.mycelium.proof import public_key_of

# From mycelium's own address derivation (BLAKE3-era mycelium, >= 0.5.0).
VECTORS = [
    (
        "a47c1d6f2a15b2c670d3a88fbe0aeb301ced12f7bcb4c8e3aa877b20f8559c02",
        "548:c783:d7ce:74a3:9ba1:a0cb:ae21:338d",
    ),
    (
        "955bf6bea5e1150fd8e270c12e5b2fc08f08f7c5f3799d10550096cc137d671b",
        "514:74ce:dd13:296f:ada7:4d2e:9335:acac",
    ),
]


@pytest.mark.parametrize(("public_key", "address"), VECTORS)
def test_reference_vectors(public_key: str, address: str) -> None:
    assert address_of(bytes.fromhex(public_key)) == address


def test_the_reference_private_key_vector() -> None:
    public_key = public_key_of(bytes(range(32)))
    assert public_key.hex() == "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
    assert address_of(public_key) == "430:9364:d8d8:84a9:dd60:de78:c767:d361"


def derived_independently(public_key: bytes) -> str:
    """The rule spelled out again, another way: 16 bytes of BLAKE3, first byte 4 or 5."""
    digest = blake3.blake3(public_key).hexdigest()[:32]
    first = int(digest[:2], 16)
    first = 0x05 if bin(first).count("1") % 2 else 0x04
    return str(ipaddress.ip_address(bytes([first]) + bytes.fromhex(digest[2:])))


@pytest.mark.parametrize("seed", range(20))
def test_generated_keys_derive_addresses_in_400_7(seed: int) -> None:
    private_key = X25519PrivateKey.generate()
    public_key = public_key_of(private_key.private_bytes_raw())
    address = address_of(public_key)
    assert address == derived_independently(public_key)
    assert ipaddress.IPv6Address(address) in ipaddress.IPv6Network("400::/7")
    assert parse_address(address) == address


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8", "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"),
        ("  04A1:2B3C:0000:0000:0000:0000:0000:0001 ", "4a1:2b3c::1"),
        ("[5ff::1]", "5ff::1"),
        ("400::", "400::"),
    ],
)
def test_typed_addresses_become_one_canonical_form(typed: str, canonical: str) -> None:
    assert parse_address(typed) == canonical


@pytest.mark.parametrize(
    ("typed", "complaint"),
    [
        ("", "enter your Mycelium address"),
        ("   ", "enter your Mycelium address"),
        ("hello", "not an IPv6 address"),
        ("10.0.0.1", "not an IPv6 address"),
        ("2001:db8::1", "not a Mycelium address"),
        ("600::1", "not a Mycelium address"),
        ("3ff:ffff::1", "not a Mycelium address"),
        ("4a1::1/64", "without a prefix length"),
        ("fe80::1%eth0", "without a prefix length or zone"),
        ("4" * 200, "far too long"),
    ],
)
def test_bad_addresses_say_why(typed: str, complaint: str) -> None:
    with pytest.raises(AddressError, match=complaint):
        parse_address(typed)


def test_public_keys_are_64_hex_characters() -> None:
    assert parse_public_key("AB" * 32) == bytes([0xAB]) * 32
    for bad in ("ab" * 31, "zz" * 32, ""):
        with pytest.raises(ValueError, match="64 hexadecimal"):
            parse_public_key(bad)
