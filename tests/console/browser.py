"""A real headless Chromium for the console's tests: Debian's ``chromium``, driven by Playwright.

Playwright's own browser downloads are never used (``playwright install`` is not run): the
browser is the system's ``/usr/bin/chromium`` (``make browser`` installs it), launched with a
fresh profile directory each time, headless, with nothing that reaches the network on its own.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 768}
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(locale: str = "zh-CN") -> Iterator[BrowserContext]:
    """A Chromium browser context at 1366×768 with a fresh profile, closed on the way out."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is not installed: run `make browser`")
    profile = Path(tempfile.mkdtemp(prefix="paygate-chromium-"))
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                args=ARGS,
                headless=True,
                viewport=VIEWPORT,  # type: ignore[arg-type]
                locale=locale,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0: nothing overflows)."""
    return int(
        page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Fill in and send the sign-in form."""
    page.goto(f"{base_url}/console/sign-in")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
