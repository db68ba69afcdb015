"""The sandbox's state file: atomic, never two writers, and nothing announced before it is saved."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from hero_onboarding.sandbox import state as state_module
from hero_onboarding.sandbox.keys import DISPATCHER
from hero_onboarding.sandbox.state import SandboxState, StateFile
from tests.conftest import sandbox_config, start_sandbox
from tests.sandbox_kit import FakeClock, Receiver, wait_for_types
from tests.waiting import wait_until, wait_until_async


class GatedWriter:
    """Stands in for the disk write: counts writers at once, and can be held mid-write."""

    def __init__(self, real) -> None:
        self.real = real
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0
        self.most_at_once = 0
        self.started = 0
        self.lock = threading.Lock()

    def __call__(self, path: Path, text: str) -> None:
        with self.lock:
            self.active += 1
            self.started += 1
            self.most_at_once = max(self.most_at_once, self.active)
        try:
            assert self.gate.wait(timeout=10), "the test never released the write"
            self.real(path, text)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def writer(monkeypatch) -> GatedWriter:
    gated = GatedWriter(state_module._write_atomically)
    monkeypatch.setattr(state_module, "_write_atomically", gated)
    return gated


async def test_a_cancelled_save_holds_off_the_next_writer(tmp_path, writer: GatedWriter) -> None:
    file = StateFile(tmp_path / "state.json")
    state = SandboxState()
    writer.gate.clear()
    first = asyncio.ensure_future(file.save(state))
    await asyncio.to_thread(wait_until, lambda: writer.started == 1, timeout=10, what="write 1")
    first.cancel()
    state.sessions["cs_test_x"] = {"id": "cs_test_x"}
    second = asyncio.ensure_future(file.save(state))
    for _ in range(10):  # loop turns, not time: a cancellation lands within one or two
        await asyncio.sleep(0)
    assert not first.done()  # it waits for its write to finish before it lets go of the lock
    assert writer.started == 1
    writer.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert writer.most_at_once == 1
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["sessions"] == {"cs_test_x": {"id": "cs_test_x"}}
    assert list(tmp_path.iterdir()) == [tmp_path / "state.json"]  # no temp file left behind


def test_a_key_in_flight_when_the_process_died_is_forgotten() -> None:
    state = SandboxState()
    state.idempotency = {
        "done": {"fingerprint": "f", "status": 200, "body": "{}", "created": 1},
        "in-flight": {"fingerprint": "g", "status": None, "body": None, "created": 1},
    }
    assert set(SandboxState.from_json(state.to_json()).idempotency) == {"done"}


async def test_no_webhook_leaves_before_its_event_is_saved(
    aiohttp_server, tmp_path, receiver: Receiver, writer: GatedWriter
) -> None:
    harness = await start_sandbox(
        aiohttp_server, sandbox_config(receiver.url, state_file=tmp_path / "state.json")
    )
    try:
        session = await harness.new_session()
        writer.gate.clear()
        paying = asyncio.ensure_future(harness.pay(session.url))
        await asyncio.to_thread(
            wait_until, lambda: writer.active == 1, timeout=10, what="the payment's save starts"
        )
        queued = [d for d in harness.engine.state.deliveries.values() if d["attempts"] == []]
        assert len(queued) == 4  # intent (created, succeeded), charge and session events wait
        assert harness.app[DISPATCHER].running == 0
        assert receiver.received == []
        writer.gate.set()
        assert (await paying).status == 303
        await wait_for_types(receiver, "checkout.session.completed")
    finally:
        writer.gate.set()
        await harness.close()


async def test_the_clock_outlives_a_failing_save(aiohttp_server, tmp_path, receiver) -> None:
    clock = FakeClock()
    state_dir = tmp_path / "state"
    harness = await start_sandbox(
        aiohttp_server,
        sandbox_config(receiver.url, state_file=state_dir / "state.json"),
        clock=clock,
    )
    try:
        first = await harness.new_session(expires_at=int(clock.now) + 1800)
        second = await harness.new_session(expires_at=int(clock.now) + 3600)
        (state_dir / "state.json").unlink()
        state_dir.rmdir()
        state_dir.write_text("in the way")  # saves fail from here on
        clock.advance(1800)
        harness.wake_clock()

        async def expired(checkout_id: str) -> bool:
            return harness.engine.state.sessions[checkout_id]["status"] == "expired"

        await wait_until_async(lambda: expired(first.id), timeout=10, what="the first expiry")
        state_dir.unlink()  # the disk recovers
        clock.advance(1800)
        harness.wake_clock()
        await wait_until_async(lambda: expired(second.id), timeout=10, what="the second expiry")
        await wait_for_types(receiver, "checkout.session.expired")

        async def both_delivered() -> bool:
            return len(receiver.of_type("checkout.session.expired")) == 2

        await wait_until_async(both_delivered, timeout=10, what="both expiries are delivered")
    finally:
        if state_dir.is_file():
            state_dir.unlink()
        await harness.close()
