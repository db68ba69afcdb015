"""Daemon logging never blocks its caller: a stalled stdout costs dropped lines, counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.process  # every test here starts real processes

LOGGING_WHILE_STDOUT_IS_STALLED = """
import logging, sys, time
from hero_onboarding.control.logs import configure_logging
configure_logging("info", "server", sys.argv[1])
log = logging.getLogger("test")
started = time.monotonic()
for n in range(50_000):
    log.warning("line %d of a flood nobody reads", n)
sys.stderr.write(f"{time.monotonic() - started:.3f}\\n")
sys.stderr.flush()
sys.stdin.readline()  # the test reads our stdout now
queued = logging.getLogger().handlers[0].queue
deadline = time.monotonic() + 20
while not queued.empty() and time.monotonic() < deadline:
    time.sleep(0.01)  # until the backlog is written: a line logged now is not dropped
try:
    1 / 0
except ZeroDivisionError:
    log.exception("after the stall")
"""


def run_stalled(log_format: str) -> tuple[float, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", LOGGING_WHILE_STDOUT_IS_STALLED, log_format],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Nobody reads stdout until the logging loop is done: the 64 KiB pipe fills at once.
        assert process.stderr is not None
        took = float(process.stderr.readline())
        out, _ = process.communicate(input=b"\n", timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return took, out.decode()


def test_a_stalled_stdout_drops_lines_instead_of_blocking_the_caller():
    started = time.monotonic()
    took, out = run_stalled("text")
    assert took < 10  # 50,000 calls; blocked, the first ~600 would have filled the pipe
    assert time.monotonic() - started < 30
    lines = out.splitlines()
    assert "line 0 of a flood nobody reads" in lines[0]
    dropped = [line for line in lines if "log lines were dropped" in line]
    # Said before the next line written after a drop: once when the writer waited on the
    # stalled pipe; more often when the flood filled the queue while the writer, short of the
    # GIL, was still writing (a fast caller on a quiet machine). Either way every line of
    # the flood is written or counted as dropped, none lost unsaid.
    assert dropped
    assert all("WARNING" in line for line in dropped)
    flood = [line for line in lines if "of a flood nobody reads" in line]
    counted = sum(int(line.split(": ", 1)[1].split()[0]) for line in dropped)
    assert len(flood) + counted == 50_000
    assert len(lines) < 50_000  # some were dropped and said so
    assert "ERROR server test: after the stall" in out
    assert "ZeroDivisionError" in out  # the traceback is still written


def test_json_lines_keep_the_exception_apart():
    _, out = run_stalled("json")
    entries = [json.loads(line) for line in out.splitlines()]
    last = entries[-1]
    assert last["message"] == "after the stall"
    assert "ZeroDivisionError" in last["exception"]
    assert any("log lines were dropped" in entry["message"] for entry in entries)
