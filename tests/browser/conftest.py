"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright, one page per test.

Playwright's own browser download cannot work here, so the launch names the executable.
`scripts/test` installs the Debian package on a new machine. When a test fails, a screenshot
of its page lands in test-artifacts/ for whoever reads the CI log.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Without the background-networking flags Chromium keeps dialling Google on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def chromium() -> str:
    assert Path(CHROMIUM).exists(), (
        f"no Chromium at {CHROMIUM}: scripts/test installs Debian's chromium package as root, "
        "or set CHROMIUM to another executable"
    )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    opened = await context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    if request.node.stash.get(_FAILED, False):
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        await opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    await context.close()
