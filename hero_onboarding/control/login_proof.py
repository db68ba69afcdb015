"""`hero-onboarding login-proof`: answer a login challenge with the Mycelium node's own key.

Runs on the user's machine, offline. It reads the node's 32-byte private key, and prints
`<public key>:<proof>` where proof = HMAC-SHA256(X25519(node key, server key), challenge). The
key never leaves the machine and is never printed.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import ConfigError
from ..mycelium.address import address_of, parse_public_key

DEFAULT_KEY = Path("~/.local/share/mycelium/priv_key.bin")
MAX_CHALLENGE = 200


@click.command(name="login-proof")
@click.option(
    "--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_KEY,
    show_default=True, help="The Mycelium node's private key file (32 raw bytes).",
)  # fmt: skip
@click.option("--challenge", required=True, help="The challenge shown on the login page.")
@click.option("--server-key", required=True, help="The server key shown on the login page.")
def login_proof_command(key_path: Path, challenge: str, server_key: str) -> None:
    """Prove control of your Mycelium address to a hero-onboarding login page.

    Prints one line, `<public key>:<proof>`, to paste into the page. On stderr it says which
    address the key belongs to, so you can check it is the one you typed.
    """
    from ..mycelium.proof import ProofError, make_proof, public_key_of, read_private_key

    if not challenge.isascii() or not challenge.strip() or len(challenge) > MAX_CHALLENGE:
        raise ConfigError("--challenge: paste the challenge exactly as the login page shows it")
    try:
        server_public = parse_public_key(server_key)
    except ValueError as exc:
        raise ConfigError(f"--server-key: {exc}") from None
    path = key_path.expanduser()
    try:
        private_key = read_private_key(path)
    except FileNotFoundError:
        raise ConfigError(f"--key: no key file at {path}") from None
    except PermissionError:
        raise ConfigError(f"--key: {path} cannot be read (permission denied)") from None
    except (OSError, ProofError) as exc:
        raise ConfigError(f"--key: {exc}") from None
    challenge = challenge.strip()
    try:
        proof = make_proof(private_key, server_public, challenge)
    except ValueError:  # a low-order point: no shared secret exists
        raise ConfigError("--server-key: that is not a usable public key") from None
    site = challenge.rpartition("@")[2] if "@" in challenge else "an unnamed site"
    click.echo(
        f"proving {address_of(public_key_of(private_key))} to {site}; paste the next line "
        "only into that site's login page",
        err=True,
    )
    click.echo(proof)
