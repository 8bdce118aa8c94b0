"""The API reference page (``GET /docs``) over a real server: everything it loads comes from
the server itself (utility networks are offline), and nothing else under it is served."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from paygate.api import create_app
from paygate.api.routes.reference import ASSETS
from tests.api.support import LiveServer, open_world, settings_for
from tests.api.test_import_http import TOKENS


class References(HTMLParser):
    """Every URL the page makes a browser load or offer: scripts, stylesheets, icons, images,
    links."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.linked: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._in_script = True
            if found.get("src"):
                self.loaded.append(str(found["src"]))
        if tag in ("img", "source", "iframe") and found.get("src"):
            self.loaded.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.loaded.append(str(found["href"]))
        if tag == "a" and found.get("href"):
            self.linked.append(str(found["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


@pytest.fixture
def server(sqlite_url: str) -> Iterator[LiveServer]:
    open_world(sqlite_url).gateway.close()
    settings = settings_for(sqlite_url)
    with LiveServer(lambda: create_app(settings, tokens=TOKENS)) as running:
        yield running


def test_every_asset_of_the_page_is_served_by_the_server_itself(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self';" in policy
        assert "connect-src 'self'" in policy
        assert "http" not in policy
        found = References()
        found.feed(page.text)
        assert found.inline_scripts == 0, "an inline script would need 'unsafe-inline'"
        assert len(found.loaded) >= 4
        for reference in [*found.loaded, *found.linked]:
            absolute = urljoin(f"{server.url}/docs", reference)
            parts = urlsplit(absolute)
            assert (parts.scheme, parts.netloc) == ("http", f"127.0.0.1:{server.port}"), reference
            answer = http.get(parts.path)
            assert answer.status_code == 200, reference
        assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text)
        for reference in found.loaded:
            answer = http.get(reference)
            name = reference.removeprefix("/docs/static/")
            assert answer.headers["content-type"] == ASSETS[name], reference
            if reference.endswith(".css"):
                # A stylesheet may load fonts and images of its own: only inline data here.
                for target in re.findall(r"url\(\s*['\"]?([^'\")]+)", answer.text):
                    assert target.startswith("data:"), (reference, target[:60])
                assert "@import" not in answer.text
        scripts = [r for r in found.loaded if r.endswith(".js")]
        assert "/docs/static/swagger-ui/swagger-ui-bundle.js" in scripts
        initialiser = http.get("/docs/static/reference.js").text
        assert 'url: "/openapi.json"' in initialiser
        assert "validatorUrl: null" in initialiser  # Swagger UI would fetch a badge otherwise


def test_the_licence_of_swagger_ui_is_served_beside_it(server: LiveServer) -> None:
    licence = httpx.get(f"{server.url}/docs/static/swagger-ui/LICENSE", timeout=10)
    assert licence.status_code == 200
    assert "Apache License" in licence.text
    notice = httpx.get(f"{server.url}/docs/static/swagger-ui/NOTICE", timeout=10)
    assert "SmartBear" in notice.text


@pytest.mark.parametrize(
    "path",
    [
        "/docs/static/swagger-ui/swagger-ui-bundle.js.map",
        "/docs/static/../routes/reference.py",
        "/docs/static/%2e%2e/__init__.py",
        "/docs/static/",
        "/docs/static/swagger-ui",
    ],
)
def test_nothing_else_is_served_under_the_page(server: LiveServer, path: str) -> None:
    answer = httpx.get(f"{server.url}{path}", timeout=10)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_the_page_and_its_files_are_not_in_the_openapi_document(server: LiveServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert not [p for p in document["paths"] if p.startswith("/docs")]
    assert "/v1/accounts/import" in document["paths"]
