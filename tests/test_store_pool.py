"""The PostgreSQL pool pings a connection only after it sat idle, and replaces a dead one.

A round trip before every checkout was a tenth of a payment's time, so a connection handed
back less than ``PG_PING_AFTER_IDLE`` seconds ago is used as it is. One idle longer is pinged
first: a connection the server closed meanwhile (a restart, an idle timeout, an operator's
``pg_terminate_backend``) is replaced by a new one, and the transaction never sees it.
"""

from __future__ import annotations

import psycopg
import pytest

from paygate.store import engine
from paygate.store.engine import Store


def _backend_pid(store: Store) -> int:
    return int(store.run(lambda tx: tx.scalar("SELECT pg_backend_pid()"), write=False))


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def test_a_connection_closed_while_idle_is_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(pg_url, pool_size=1)
    try:
        first = _backend_pid(store)
        _terminate(pg_url, first)
        monkeypatch.setattr(engine, "PG_PING_AFTER_IDLE", 0.0)  # every checkout is "idle"
        second = _backend_pid(store)
        assert second != first
        assert store.run(lambda tx: tx.scalar("SELECT 41 + 1"), write=False) == 42
    finally:
        store.dispose()


def test_a_connection_back_from_work_just_now_is_not_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PG_PING_AFTER_IDLE", 3600.0)
    store = Store(pg_url, pool_size=1)
    sent: list[str] = []
    try:
        first = _backend_pid(store)
        pinged = store.engine.dialect.do_ping

        def counting_ping(conn: object) -> bool:
            sent.append("ping")
            return bool(pinged(conn))

        monkeypatch.setattr(store.engine.dialect, "do_ping", counting_ping)
        for _ in range(5):
            assert _backend_pid(store) == first
        assert sent == []
        # Without a ping, a connection the server closed fails the transaction that gets it:
        # what the idle threshold bounds.
        _terminate(pg_url, first)
        with pytest.raises(psycopg.OperationalError):
            _backend_pid(store)
    finally:
        store.dispose()


def test_a_broken_connection_is_pinged_however_recent(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "PG_PING_AFTER_IDLE", 3600.0)
    store = Store(pg_url, pool_size=1)
    try:
        first = _backend_pid(store)
        _terminate(pg_url, first)
        with pytest.raises(psycopg.OperationalError):
            _backend_pid(store)  # the driver learns the connection is broken here
        second = _backend_pid(store)
        assert second != first
    finally:
        store.dispose()
