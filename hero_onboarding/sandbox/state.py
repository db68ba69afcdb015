"""Everything the sandbox knows, as plain JSON-able dicts, and the file that keeps it.

Objects are stored in the shape the API serves them, so serving, snapshotting into events and
persisting are all the same data. Dicts keep insertion order, which is creation order: lists
are served newest first by walking them backwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ..errors import HeroOnboardingError

FORMAT_VERSION: Final = 1

Obj = dict[str, Any]


class StateFileError(HeroOnboardingError, RuntimeError):
    """The state file exists but cannot be used; the message says which file and why."""


@dataclass
class SandboxState:
    sessions: dict[str, Obj] = field(default_factory=dict)
    line_items: dict[str, list[Obj]] = field(default_factory=dict)  # by session id
    intent_data: dict[str, Obj] = field(default_factory=dict)  # payment_intent_data, by session
    payment_intents: dict[str, Obj] = field(default_factory=dict)
    charges: dict[str, Obj] = field(default_factory=dict)
    refunds: dict[str, Obj] = field(default_factory=dict)
    disputes: dict[str, Obj] = field(default_factory=dict)
    # Refunds due to change status on their own: refund id -> {status, failure_reason, due_at}.
    refund_transitions: dict[str, Obj] = field(default_factory=dict)
    # What a test card makes happen to its charge later: charge id -> {refund_failure}.
    charge_behaviours: dict[str, Obj] = field(default_factory=dict)
    events: dict[str, Obj] = field(default_factory=dict)
    deliveries: dict[str, Obj] = field(default_factory=dict)
    idempotency: dict[str, Obj] = field(default_factory=dict)
    # Delayed (bank) payments waiting to settle: session id -> {outcome, due_at}.
    settlements: dict[str, Obj] = field(default_factory=dict)
    # 3-D Secure challenges waiting on the buyer: attempt id -> {session, card, email, name}.
    challenges: dict[str, Obj] = field(default_factory=dict)
    # Endpoints made through /v1/webhook_endpoints (as served), and their signing secrets.
    webhook_endpoints: dict[str, Obj] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT_VERSION, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxState:
        data = json.loads(text)
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT_VERSION:
            raise ValueError(f"not a sandbox state file of format {FORMAT_VERSION}")
        state = cls(**data)
        # A key whose request was in flight when the process died answered nothing: let a
        # retry run rather than answer 409 for a day.
        state.idempotency = {k: r for k, r in state.idempotency.items() if r["status"] is not None}
        return state


class StateFile:
    """Atomic snapshots (temp file, fsync, rename) written off the event loop.

    Callers that change state await `save`; saves that queue up behind a write are folded into
    one, since each writes the whole state as it is when its turn comes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._changes = 0
        self._saved = 0

    def load(self) -> SandboxState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return SandboxState()
        except OSError as exc:
            raise StateFileError(f"cannot read sandbox state {self.path}: {exc.strerror}") from None
        try:
            return SandboxState.from_json(text)
        except (ValueError, TypeError) as exc:
            raise StateFileError(f"sandbox state {self.path} is unreadable: {exc}") from None

    async def save(self, state: SandboxState) -> None:
        self._changes += 1
        wanted = self._changes
        async with self._lock:
            if self._saved >= wanted:
                return  # a later snapshot already covered this change
            covered = self._changes
            text = state.to_json()
            write = asyncio.ensure_future(asyncio.to_thread(_write_atomically, self.path, text))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # The thread runs on regardless: hold the lock until it is done, so no second
                # write ever overlaps it, then let the cancellation through.
                await asyncio.wait([write])
                raise
            self._saved = covered


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    temp = Path(temp_name)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
