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


_OVERFLOW = """() => {
  const doc = document.documentElement;
  let worst = doc.scrollWidth - doc.clientWidth;
  for (const el of document.querySelectorAll("body *")) {
    if (["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName)) continue;  // text scrolls in them
    const box = el.getBoundingClientRect();
    if (box.width > 0) worst = Math.max(worst, Math.ceil(box.right) - doc.clientWidth);
    const clips = getComputedStyle(el).overflowX !== "visible";
    if (clips && el.clientWidth > 0) worst = Math.max(worst, el.scrollWidth - el.clientWidth);
  }
  return worst;
}"""


def overflow(page: Page) -> int:
    """How many pixels the widest thing on the page reaches past what shows it (0: nothing
    overflows): the page past the window, an element past the window's right edge, or the
    content of a box that scrolls or clips (a wide table in its scrolling box) past the box."""
    return int(page.evaluate(_OVERFLOW))


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Fill in and send the sign-in form."""
    page.goto(f"{base_url}/console/sign-in")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
