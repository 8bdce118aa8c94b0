"""Headless Chromium for the page tests: Debian's ``chromium`` driven by Playwright.

``make browser`` installs the browser from Debian's packages (the ``pytest`` target depends on
it); Playwright never downloads a browser of its own. A test module starts one browser (closed
with the module) with a fresh profile in the session's temporary folder, no network, no
first-run or background traffic. Without Chromium the fixture fails (naming ``make browser``):
a page test never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WIDE = (1366, 768)
"""The laptop screen every report must fit without sideways scrolling."""
NARROW = (420, 800)
"""A phone held upright: tables scroll inside their own box, the page never does."""


def _local_only(route: Route) -> None:
    # A report is self-contained: anything but the file itself is refused (and noticed).
    if route.request.url.startswith("file://"):
        route.continue_()
    else:
        route.abort()


# Module-scoped, not session-scoped: Playwright's sync API keeps its event loop running in the
# main thread while it is open, and a later test module that runs an asyncio loop of its own
# would find it there.
@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """One headless Chromium for a test module, with a fresh user-data folder."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": WIDE[0], "height": WIDE[1]},
        )
        context.route("**/*", _local_only)
        try:
            yield context
        finally:
            context.close()


def open_page(context: BrowserContext, path: Path, size: tuple[int, int]) -> Page:
    """A new tab of ``size`` (width, height) showing the file at ``path``."""
    page = context.new_page()
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto(path.resolve().as_uri())
    return page


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """The whole page as a PNG in ``folder``: the path a failing check names."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
