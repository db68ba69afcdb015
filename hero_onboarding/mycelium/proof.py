"""Key proof: showing control of a Mycelium address without a Mycelium node on the server.

x25519 keys cannot sign, so the proof is a MAC under a Diffie-Hellman secret:
`HMAC-SHA256(X25519(user_sk, server_pk), nonce)`. Only the holder of the node's private key (or
the server) can compute it, and the server checks that the public key presented derives to the
address claimed. The nonce is single-use, so a proof cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from pathlib import Path
from typing import Final

import nacl.bindings
import nacl.exceptions

from ..errors import InputError
from .address import parse_public_key

KEY_BYTES: Final = 32
MAC_BYTES: Final = 32
FIELD_PRIME: Final = 2**255 - 19


class ProofError(InputError, ValueError):
    """A proof that cannot even be read; the message says what was expected."""


def public_key_of(private_key: bytes) -> bytes:
    """X25519 (RFC 7748) of the base point: libsodium, through PyNaCl.

    PyNaCl rather than `cryptography`: the same pyca upkeep, but the public daemon's RSS grows
    by ~1.3 MiB for it instead of ~9 (cryptography loads its whole OpenSSL binding for X25519).
    """
    return nacl.bindings.crypto_scalarmult_base(private_key)


def proof_mac(private_key: bytes, peer_public_key: bytes, nonce: str) -> bytes:
    """HMAC-SHA256 of the nonce (its ASCII text) under the X25519 secret of the two keys.

    ValueError for a low-order peer key: libsodium refuses the all-zero secret it gives.
    """
    try:
        secret = nacl.bindings.crypto_scalarmult(private_key, peer_public_key)
    except nacl.exceptions.RuntimeError as refused:
        raise ValueError("that public key gives no shared secret (low order)") from refused
    return hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).digest()


def make_proof(user_private_key: bytes, server_public_key: bytes, nonce: str) -> str:
    """What `hero-onboarding login-proof` prints: `<public key hex>:<mac hex>`."""
    mac = proof_mac(user_private_key, server_public_key, nonce)
    return f"{public_key_of(user_private_key).hex()}:{mac.hex()}"


def parse_proof(text: str) -> tuple[bytes, bytes]:
    """(public key, mac) from a pasted proof, or ProofError."""
    public_part, _, mac_part = text.strip().lower().partition(":")
    try:
        public_key = parse_public_key(public_part)
        mac = bytes.fromhex(mac_part)
    except ValueError:
        raise ProofError(
            "a proof is two hexadecimal parts, <public key>:<proof>, as login-proof prints it"
        ) from None
    if len(mac) != MAC_BYTES:
        raise ProofError("the proof part is 64 hexadecimal characters")
    if int.from_bytes(public_key, "little") >= FIELD_PRIME:
        # X25519 ignores the top bit, so such a key would stand for another one's address too.
        raise ProofError("that public key is not in canonical form")
    return public_key, mac


def proof_holds(server_private_key: bytes, user_public_key: bytes, nonce: str, mac: bytes) -> bool:
    """Whether `mac` is the MAC the holder of `user_public_key`'s private key would make."""
    try:
        expected = proof_mac(server_private_key, user_public_key, nonce)
    except ValueError:  # a low-order public key gives an all-zero secret: no proof at all
        return False
    return hmac.compare_digest(expected, mac)


def read_private_key(path: Path) -> bytes:
    """A Mycelium node key file: exactly 32 raw bytes (mycelium's priv_key.bin)."""
    data = path.read_bytes()
    if len(data) != KEY_BYTES:
        raise ProofError(
            f"{path} is {len(data)} bytes; a Mycelium key file holds exactly {KEY_BYTES}"
        )
    return data


def load_or_create_key(path: Path) -> bytes:
    """The server's own x25519 private key, made once (0600) and kept; blocking file I/O.

    It appears whole or not at all (written to a temporary file, then linked into place), so a
    crash can never leave an empty key behind; a key others can read is refused, not used.
    """
    try:
        key = read_private_key(path)
    except FileNotFoundError:
        return _create_key(path)
    if path.stat().st_mode & 0o077:
        raise ProofError(f"{path} can be read by other users; run: chmod 600 {path}")
    return key


def _create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(KEY_BYTES)  # any 32 bytes are an X25519 key: scalar mult clamps them
    fd, temp_name = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp_name, path)
        except FileExistsError:  # another process made it first: use theirs
            return read_private_key(path)
    finally:
        os.unlink(temp_name)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key
