"""Our X25519 (libsodium through PyNaCl) against an independent one (pyca's cryptography).

The proof is only as good as the Diffie-Hellman under it: the public key each private key
derives to, and the secret two keys share, must be RFC 7748's, which cryptography also computes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hero_onboarding.mycelium.proof import proof_holds, proof_mac, public_key_of

# RFC 7748 section 6.1: Alice's private key and the public key it derives to.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_rfc_7748_vectors() -> None:
    assert public_key_of(ALICE_PRIVATE) == ALICE_PUBLIC
    expected = hmac.new(SHARED, b"nonce-1", hashlib.sha256).digest()
    assert proof_mac(ALICE_PRIVATE, BOB_PUBLIC, "nonce-1") == expected


@pytest.mark.parametrize("seed", range(20))
def test_keys_and_secrets_agree_with_cryptography(seed: int) -> None:
    ours, theirs = os.urandom(32), X25519PrivateKey.generate()
    their_public = theirs.public_key().public_bytes_raw()
    assert public_key_of(ours) == (
        X25519PrivateKey.from_private_bytes(ours).public_key().public_bytes_raw()
    )
    shared = theirs.exchange(X25519PublicKey.from_public_bytes(public_key_of(ours)))
    mac = hmac.new(shared, f"n{seed}".encode(), hashlib.sha256).digest()
    assert proof_mac(ours, their_public, f"n{seed}") == mac
    assert proof_holds(ours, their_public, f"n{seed}", mac)
    assert not proof_holds(ours, their_public, f"n{seed + 1}", mac)


@pytest.mark.parametrize(
    "low_order",
    [
        bytes(32),
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
)
def test_a_low_order_public_key_proves_nothing(low_order: bytes) -> None:
    with pytest.raises(ValueError, match="low order"):
        proof_mac(ALICE_PRIVATE, low_order, "n")
    assert not proof_holds(ALICE_PRIVATE, low_order, "n", bytes(32))
