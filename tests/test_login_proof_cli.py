"""`hero-onboarding login-proof`, the real console script, against the server's own check."""

from __future__ import annotations

import os
import stat

import pytest

from hero_onboarding.mycelium.address import address_of
from hero_onboarding.mycelium.proof import (
    ProofError,
    load_or_create_key,
    parse_proof,
    proof_holds,
    public_key_of,
)
from tests.processes import run_cli

E = "hero-onboarding: error: "
USER_KEY = bytes(range(32))  # the reference doc's vector: address 430:9364:d8d8:84a9:...


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "priv_key.bin"
    path.write_bytes(USER_KEY)
    return path


@pytest.mark.process
def test_the_printed_proof_passes_the_servers_check(tmp_path, key_file) -> None:
    server_key = load_or_create_key(tmp_path / "server" / "login_key")
    server_public = public_key_of(server_key).hex()
    result = run_cli(
        "login-proof", "--key", str(key_file), "--challenge", "c0ffee@pay.example",
        "--server-key", server_public, env={},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    public_key, mac = parse_proof(result.stdout.strip())
    assert address_of(public_key) == "430:9364:d8d8:84a9:dd60:de78:c767:d361"
    assert proof_holds(server_key, public_key, "c0ffee@pay.example", mac)
    assert not proof_holds(server_key, public_key, "c0ffee@phish.example", mac)
    assert result.stderr.startswith(
        "proving 430:9364:d8d8:84a9:dd60:de78:c767:d361 to pay.example;"
    )
    assert USER_KEY.hex() not in result.stdout + result.stderr


def test_the_server_key_is_made_once_and_kept_private(tmp_path) -> None:
    path = tmp_path / "data" / "login_key"
    first = load_or_create_key(path)
    assert load_or_create_key(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 32
    assert sorted(p.name for p in path.parent.iterdir()) == ["login_key"]  # no temp file left
    path.chmod(0o644)
    with pytest.raises(ProofError, match="can be read by other users; run: chmod 600"):
        load_or_create_key(path)


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--challenge", "c", "--server-key", "ab"], "--server-key: a public key is 64"),
        (["--challenge", "", "--server-key", "ab" * 32], "--challenge: paste the challenge"),
        (["--challenge", "c", "--server-key", "ab" * 32, "--key", "/nonexistent/k"], "no key file"),
    ],
)
def test_bad_invocations_exit_2_with_one_line(args, words) -> None:
    result = run_cli("login-proof", *args, env={})
    assert result.returncode == 2
    assert result.stderr.startswith(E)
    assert words in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.process
def test_a_key_file_of_the_wrong_size_is_refused(tmp_path) -> None:
    bad = tmp_path / "short.bin"
    bad.write_bytes(b"x" * 31)
    result = run_cli(
        "login-proof", "--key", str(bad), "--challenge", "c", "--server-key", "ab" * 32, env={}
    )
    assert result.returncode == 2
    assert "31 bytes; a Mycelium key file holds exactly 32" in result.stderr


@pytest.mark.process
def test_a_low_order_server_key_is_refused(key_file) -> None:
    result = run_cli(
        "login-proof", "--key", str(key_file), "--challenge", "c", "--server-key", "00" * 32, env={}
    )
    assert result.returncode == 2
    assert result.stderr == f"{E}--server-key: that is not a usable public key\n"
