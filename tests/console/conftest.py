"""Fixtures of the console's tests: the story on a fresh database of each kind, staff of every
role, and the console served by a real uvicorn server sharing the story's fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from paygate.clock import FixedClock
from paygate.console.staff import StaffRegistry
from paygate.gateway import Gateway
from tests.api.support import LiveServer, live_server, settings_for
from tests.console.support import StaffClient, Story, add_staff, build_story

MAX_FAILURES = 3


@dataclass
class ConsoleWorld:
    """The database's side of a console test."""

    gateway: Gateway
    staff: StaffRegistry
    story: Story
    clock: FixedClock


@pytest.fixture
def console_clock() -> FixedClock:
    """2026-11-25 10:00 in Shanghai, moved only by the test."""
    return FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))


@pytest.fixture
def world(db_url: str, console_clock: FixedClock, tmp_path: Path) -> Iterator[ConsoleWorld]:
    """The story and the staff on a fresh database of each kind."""
    gateway = Gateway.open(settings=settings_for(db_url), clock=console_clock)
    try:
        staff = add_staff(gateway)
        yield ConsoleWorld(gateway, staff, build_story(gateway, tmp_path), console_clock)
    finally:
        gateway.close()


@pytest.fixture
def server(
    db_url: str, world: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    """The gateway with its console over ``world``'s database, on a loopback port; a lockout
    after three failures."""
    monkeypatch.setenv("PAYGATE_CONSOLE__MAX_FAILURES", str(MAX_FAILURES))
    monkeypatch.setenv("PAYGATE_CONSOLE__SECURE_COOKIES", "auto")
    with live_server(db_url, clock=world.clock) as running:
        yield running


class Clients:
    """Browser-like clients of one server, all closed when the test ends."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self._open: list[StaffClient] = []

    def new(self) -> StaffClient:
        """A client that has not signed in."""
        client = StaffClient(self.server.url)
        self._open.append(client)
        return client

    def raw(self, token: str | None = None) -> httpx.Client:
        """A bare client, holding session ``token`` if given (an attacker's, a replay)."""
        client = self.new().http
        if token is not None:
            client.cookies.set("paygate_console", token, path="/console")
        return client

    def signed_in(self, username: str) -> StaffClient:
        """A client signed in as ``username``."""
        client = self.new()
        answer = client.sign_in(username)
        assert answer.status_code == 303, answer.text
        return client

    def close(self) -> None:
        for client in self._open:
            client.close()


@pytest.fixture
def clients(server: LiveServer) -> Iterator[Clients]:
    """Clients of ``server``."""
    made = Clients(server)
    try:
        yield made
    finally:
        made.close()
