"""Screenshots of the console for docs/console.md, taken in a real Chromium at 1366×768.

``python -m tests.console.screenshots docs/images`` builds the tests' story on a fresh SQLite
file, serves it with ``paygate serve``, and writes one PNG per page; the browser tests call
:func:`take` too, so that every picture in the docs is a page the tests saw not overflowing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page

from paygate.gateway import Gateway
from paygate.models import PaymentIntent
from tests.api.processes import serving
from tests.api.support import settings_for
from tests.console.browser import chromium, overflow, sign_in
from tests.console.support import (
    DISCONNECTED,
    FAILED,
    HOSPITAL,
    METER,
    PASSWORD,
    add_staff,
    build_story,
)
from tests.databases import fresh_sqlite_url

PAGES = (
    ("console-sign-in", "li.clerk", None, "/console/sign-in"),
    ("console-search", "li.clerk", "zh-CN", f"/console/search?q={METER[:8]}"),
    ("console-account", "li.clerk", "zh-CN", f"/console/accounts/{DISCONNECTED}"),
    ("console-account-en", "li.clerk", "en", f"/console/accounts/{DISCONNECTED}"),
    ("console-failed-order", "zhao.supervisor", "zh-CN", f"/console/accounts/{FAILED}"),
    ("console-negotiation", "zhao.supervisor", "zh-CN", f"/console/accounts/{HOSPITAL}#negotiate"),
    ("console-finance", "wang.finance", "zh-CN", "/console/finance"),
    ("console-promise", "zhao.supervisor", "zh-CN", "/console/promise"),
)


def shoot(page: Page, path: Path) -> None:
    """A screenshot of the window (1366×768) after checking nothing overflows it."""
    assert overflow(page) <= 0, f"{page.url} is wider than the window"
    page.screenshot(path=str(path))


def take(base_url: str, out: Path) -> list[Path]:
    """One PNG per page of :data:`PAGES` in ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, username, language, target in PAGES:
        with chromium() as context:
            page = context.new_page()
            if language is not None:
                sign_in(page, base_url, username, PASSWORD)
                page.goto(f"{base_url}/console/language/{language}?next={target}")
            page.goto(f"{base_url}{target}")
            if "#" in target:  # the part of the page the picture is about
                page.locator(f"#{target.split('#')[1]}-form").scroll_into_view_if_needed()
            path = out / f"{name}.png"
            shoot(page, path)
            written.append(path)
    return written


def main(out: str) -> None:
    """Build the story, serve it, and take the screenshots into ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_sqlite_url(Path(tmp))
        with Gateway.open(settings=settings_for(url)) as gateway:
            add_staff(gateway)
            build_story(gateway, Path(tmp))
            status = gateway.account_status(DISCONNECTED)
            gateway.pay(
                PaymentIntent(
                    channel="alipay",
                    channel_txn_id="2026120522001",
                    account_no=DISCONNECTED,
                    amount=status.arrears,
                    paid_at=gateway.clock.now(),
                )
            )
        args = ["--database-url", url, "--log-level", "warning"]
        with serving(args, stderr=Path(tmp) / "serve.log") as (base, _):
            for path in take(base, Path(out)):
                print(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
