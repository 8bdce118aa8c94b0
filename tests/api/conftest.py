"""Fixtures of the HTTP tests: the database's side (``world``) and a live server beside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.support import LiveServer, World, live_server, open_world


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """Accounts, bills and devices on a fresh database of each kind, written beside the server."""
    world = open_world(db_url)
    try:
        yield world
    finally:
        world.gateway.close()


@pytest.fixture
def server(db_url: str, world: World) -> Iterator[LiveServer]:
    """The gateway over ``world``'s database, on a loopback port, with the kiosk channel."""
    with live_server(db_url) as running:
        yield running
