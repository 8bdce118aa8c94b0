"""The voucher channel was named ``prepaid_card``: a database sealed under the old name upgrades
(migration 0006), still verifies, and its payments are still answered as replays — under the
old name as under the new one — never posted twice. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from paygate import renames
from paygate.cli import app
from paygate.config import Settings
from paygate.gateway import Gateway
from paygate.ledger import AccountKind
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store import migrate
from paygate.store.engine import Store

runner = CliRunner()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own_db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of each kind of this test's own: these tests move its revision,
    which the session's shared PostgreSQL database must never see."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    url = str(request.getfixturevalue("empty_pg_url"))
    migrate.upgrade(url)
    return url


PAID_AT = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def intent(channel: str, txn: str, amount: int = 5_000) -> PaymentIntent:
    return PaymentIntent(
        channel=channel,
        channel_txn_id=txn,
        account_no="A1",
        amount=Money(amount, "CNY"),
        paid_at=PAID_AT,
    )


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    store = Store(url)
    try:
        return store.run(lambda tx: tx.all(sql), write=False)
    finally:
        store.dispose()


def database_of_0005(url: str) -> str:
    """A database at revision 0005 as the code of then left it, sealed; its head hash.

    Revision 0006 changes no table, only stored names, so a database that today's code
    writes exactly what the code of 0005 wrote into (``prepaid_card`` in the payments, the
    clearing account's code, the journal's references and memos), taken down to 0006 (the
    later revisions change tables, and have their own downgrades) and stamped 0005, is such a
    database. The intents are built unvalidated (``model_construct``), since
    validation now reads the retired name as ``voucher``.
    """
    base = Settings(database_url=url, seal_every=0)
    old_liability = base.model_copy(
        update={"channel_debit_accounts": {"prepaid_card": AccountKind.VOUCHER_LIABILITY}}
    )
    old_clearing = base.model_copy(update={"channel_debit_accounts": {}})
    with Gateway.open(settings=old_liability) as gateway:
        gateway.open_account("A1")
        gateway.pay(old_intent("B1:0001"))
    with Gateway.open(settings=old_clearing) as gateway:
        gateway.pay(old_intent("B1:0002", 7_000))
        gateway.seal()
        report = gateway.verify()
    assert report.ok and report.sealed_entries == 2 and report.head_hash is not None
    migrate.downgrade(url, "0006")
    store = Store(url)
    try:
        store.run(lambda tx: tx.execute("UPDATE alembic_version SET version_num = '0005'"))
    finally:
        store.dispose()
    assert migrate.current_revision(url) == "0005"
    return report.head_hash


def old_intent(txn: str, amount: int = 5_000) -> PaymentIntent:
    """A payment of the channel under its old name, as the code of 0005 took it."""
    return PaymentIntent.model_construct(
        channel="prepaid_card",
        channel_txn_id=txn,
        account_no="A1",
        amount=Money(amount, "CNY"),
        paid_at=PAID_AT,
        terminal_id=None,
    )


def test_a_sealed_0005_database_upgrades_verifies_and_replays(own_db_url: str) -> None:
    head = database_of_0005(own_db_url)
    assert sorted(query(own_db_url, "SELECT channel FROM payments")) == [("prepaid_card",)] * 2
    assert ("clearing:prepaid_card:CNY",) in query(own_db_url, "SELECT code FROM ledger_accounts")
    assert query(
        own_db_url, "SELECT COUNT(*) FROM journal_entries WHERE reference LIKE '%prepaid%'"
    )[0] == (2,)

    migrate.upgrade(own_db_url)

    # Unhashed keys moved; the sealed journal kept its text, and the chain still holds.
    assert sorted(query(own_db_url, "SELECT channel FROM payments")) == [("voucher",)] * 2
    assert all(
        "prepaid" not in str(r) for (r,) in query(own_db_url, "SELECT receipt FROM payments")
    )
    codes = {str(c) for (c,) in query(own_db_url, "SELECT code FROM ledger_accounts")}
    assert "clearing:voucher:CNY" in codes and not any("prepaid" in c for c in codes)
    result = runner.invoke(
        app, ["audit", "verify", "--expect-head", head, "--database-url", own_db_url]
    )
    assert result.exit_code == 0, result.output
    assert "audit clean" in result.output
    assert re.search(rf"head block \d+: {head}", result.output), result.output

    entries = query(own_db_url, "SELECT COUNT(*) FROM journal_entries")[0]
    with Gateway.open(settings=Settings(database_url=own_db_url, seal_every=0)) as gateway:
        again = gateway.pay(intent("voucher", "B1:0001"))
        assert again.replayed and again.channel == "voucher"
        with pytest.warns(DeprecationWarning, match="'prepaid_card' is deprecated"):
            old = intent("prepaid_card", "B1:0001")
        assert old.channel == "voucher"
        assert gateway.pay(old).replayed
        with pytest.warns(DeprecationWarning, match="PaymentIntent.channel"):
            moved = intent("prepaid_card", "B1:0002", 7_000)
        assert gateway.pay(moved).replayed
        # A new payment of the channel posts to the account its old payments sit in.
        gateway.pay(intent("voucher", "B1:0003"))
        # A reversal named by the old channel name finds the payment too.
        with pytest.warns(DeprecationWarning, match="channel: channel name 'prepaid_card'"):
            gateway.reverse_by_channel_txn("prepaid_card", "B1:0003", "keyed twice")
        assert gateway.verify().ok
    assert query(own_db_url, "SELECT COUNT(*) FROM payments")[0] == (3,)
    # One entry for the new payment, one for its reversal; none for the replays.
    assert query(own_db_url, "SELECT COUNT(*) FROM journal_entries")[0] == (
        int(str(entries[0])) + 2,
    )


def test_the_downgrade_puts_the_old_name_back(own_db_url: str) -> None:
    with Gateway.open(settings=Settings(database_url=own_db_url, channel_debit_accounts={})) as gw:
        gw.open_account("A1")
        gw.pay(intent("voucher", "B1:0001"))
    migrate.downgrade(own_db_url, "0005")
    assert query(own_db_url, "SELECT channel FROM payments") == [("prepaid_card",)]
    codes = {str(c) for (c,) in query(own_db_url, "SELECT code FROM ledger_accounts")}
    assert "clearing:prepaid_card:CNY" in codes and "clearing:voucher:CNY" not in codes
    migrate.upgrade(own_db_url)
    assert query(own_db_url, "SELECT channel FROM payments") == [("voucher",)]


def test_the_upgrade_refuses_to_merge_a_channel_already_named_voucher(own_db_url: str) -> None:
    with Gateway.open(settings=Settings(database_url=own_db_url)) as gw:
        gw.open_account("A1")
        gw.pay(intent("voucher", "B1:0001"))
    migrate.downgrade(own_db_url, "0005")
    store = Store(own_db_url)
    try:
        # A third-party channel called "voucher" beside the old prepaid_card one.
        store.run(
            lambda tx: tx.execute("UPDATE payments SET channel = 'voucher', channel_txn_id = 'X1'")
        )
        store.run(
            lambda tx: tx.execute(
                "INSERT INTO devices (id, device_id, channel, key_kind, status, created_at) "
                "VALUES (1, 'D1', 'prepaid_card', 'ed25519', 'active', :at)",
                {"at": tx.ts(datetime.now(UTC))},
            )
        )
    finally:
        store.dispose()
    with pytest.raises(Exception, match="would merge two channels"):
        migrate.upgrade(own_db_url)
    assert migrate.current_revision(own_db_url) == "0005"
    assert query(own_db_url, "SELECT channel FROM devices") == [("prepaid_card",)]


def test_retired_channel_names_are_read_as_the_new_one() -> None:
    assert renames.channel_names("voucher") == ("voucher", "prepaid_card")
    assert renames.channel_names("prepaid_card") == ("voucher", "prepaid_card")
    assert renames.channel_names("kiosk") == ("kiosk",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renames.current_channel("kiosk", where="test") == "kiosk"
    with pytest.warns(DeprecationWarning, match="Settings: channel name 'prepaid_card'"):
        settings = Settings(channel_debit_accounts={"prepaid_card": AccountKind.BANK})
    assert settings.channel_debit_accounts == {"voucher": AccountKind.BANK}
    with pytest.warns(DeprecationWarning, match="Settings: channel name 'prepaid_card'"):
        cut = Settings(channel_cutoffs={"prepaid_card": datetime(2026, 1, 1, 23).time()})
    assert set(cut.channel_cutoffs) == {"voucher"}


def test_the_old_channel_module_is_an_alias_that_warns() -> None:
    import importlib
    import sys

    from paygate.channels import voucher

    sys.modules.pop("paygate.channels.prepaid_card", None)
    with pytest.warns(DeprecationWarning, match="use paygate.channels.voucher"):
        old = importlib.import_module("paygate.channels.prepaid_card")
    with pytest.warns(DeprecationWarning, match=r"PrepaidCardAdapter is deprecated"):
        assert old.PrepaidCardAdapter is voucher.VoucherAdapter
    with pytest.warns(DeprecationWarning, match="read_voucher_statement"):
        assert old.read_prepaid_card_statement is voucher.read_voucher_statement
    with pytest.raises(AttributeError, match="NoSuchName"):
        _ = old.NoSuchName
    assert voucher.VoucherAdapter.name == "voucher"


def test_the_registry_finds_the_channel_by_its_retired_name() -> None:
    from paygate.channels.base import ChannelRegistry
    from paygate.channels.voucher import VoucherAdapter

    registry = ChannelRegistry.with_builtins()
    assert "voucher" in registry and "prepaid_card" in registry
    assert "prepaid_card" not in registry.names()
    with pytest.warns(FutureWarning, match="channel registry: channel name 'prepaid_card'"):
        assert registry.get("prepaid_card") is VoucherAdapter


def test_the_retired_python_names_of_the_other_concepts_are_aliases() -> None:
    from paygate.api import schemas
    from paygate.reconcile.model import Finding, ReconciliationRun

    with pytest.warns(DeprecationWarning, match="use paygate.api.schemas.SupplyOrderProgress"):
        assert schemas.ReconnectionProgress is schemas.SupplyOrderProgress
    assert "open_findings" in ReconciliationRun.model_fields
    assert "exceptions" not in ReconciliationRun.model_fields
    assert "open_finding" in Finding.model_fields and "exception" not in Finding.model_fields


def test_a_device_registered_for_the_retired_channel_name_is_a_voucher_device(
    gateway: Gateway,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from paygate.devices import DeviceRegistry

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.warns(FutureWarning, match="device channel: channel name 'prepaid_card'"):
        device = DeviceRegistry(gateway.store, gateway.clock).add(
            "T1", "prepaid_card", public_key_raw=raw
        )
    assert device.channel == "voucher"
