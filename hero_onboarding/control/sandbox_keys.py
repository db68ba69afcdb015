"""Test keys for `--start --sandbox`: made once per data directory, kept 0600, never shown.

The local sandbox accepts only this API key and signs webhooks with this secret; the public
daemon uses the same pair. Keeping them in the data directory makes a restart keep working
with the sandbox's saved state (its webhook endpoint, its sessions).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..primitives import Secret
from .errors import CommandFailed

FILE_NAME: Final = "sandbox-keys.json"
# Set for the daemons of `--start --sandbox`: they take their keys from this file, first.
KEYS_FILE_ENV: Final = "HERO_ONBOARDING_SANDBOX_KEYS_FILE"


def keys_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


@dataclass(frozen=True)
class SandboxKeys:
    webhook_signing_key: Secret
    secret_key: Secret


def load_or_create(data_dir: Path) -> SandboxKeys:
    path = keys_path(data_dir)
    try:
        return read(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = {
        "webhook_signing_key": "whsec_sandbox_" + secrets.token_hex(24),
        "secret_key": "sk_test_sandbox_" + secrets.token_urlsafe(24),
    }
    partial = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(fresh, file)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(partial, path)  # never replaces keys another start made first
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return read(path)


def read(path: Path) -> SandboxKeys:
    try:
        stored = json.loads(path.read_text())
        return SandboxKeys(Secret(stored["webhook_signing_key"]), Secret(stored["secret_key"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandFailed(
            f"the sandbox keys in {path} are unreadable ({type(exc).__name__}); remove the "
            "file to make new ones"
        ) from None
