"""A real headless Chromium for the console's tests: Debian's ``chromium``, driven by Playwright.

The browser and its flags are those of :mod:`tests.browser` (Debian's ``/usr/bin/chromium``,
which ``make browser`` installs; never a browser Playwright downloads), launched here with a
fresh profile directory each time, against a running ``paygate serve``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_ARGS, WIDE

VIEWPORT = {"width": WIDE[0], "height": WIDE[1]}


@contextmanager
def chromium(locale: str = "zh-CN") -> Iterator[BrowserContext]:
    """A Chromium browser context at 1366×768 with a fresh profile, closed on the way out."""
    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is not installed: run `make browser`")
    profile = Path(tempfile.mkdtemp(prefix="paygate-chromium-"))
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(CHROMIUM),
                args=list(CHROMIUM_ARGS),
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
