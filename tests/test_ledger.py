"""The ledger's guarantees, checked from outside: the database refuses what the code would not
write, and audit verification finds what someone changed behind its back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from paygate import ledger
from paygate.clock import FixedClock
from paygate.errors import LedgerError
from paygate.gateway import Gateway
from paygate.ledger import EntryDraft, PostingDraft
from paygate.models import PaymentIntent
from paygate.money import Money
from paygate.store.engine import Tx


def populate(gateway: Gateway) -> None:
    gateway.open_account("A1")
    gateway.open_account("A2", category="non_residential")
    for n, acct in enumerate(("A1", "A2")):
        gateway.issue_bill(
            acct,
            bill_no=f"B{n}",
            amount=Money(50_000, "CNY"),
            period="2026-10",
            due_date=date(2026, 11, 15),
        )
        gateway.pay(
            PaymentIntent(
                channel="kiosk",
                channel_txn_id=f"K{n}",
                account_no=acct,
                amount=Money(30_000, "CNY"),
                paid_at=datetime(2026, 11, 25, 3, tzinfo=UTC),
            )
        )
    gateway.seal()


def raw(gateway: Gateway, sql: str, params: dict[str, object] | None = None) -> None:
    """Change the database as an intruder would: around the append-only triggers."""

    def work(tx: Tx) -> None:
        if tx.dialect == "postgresql":
            tx.execute("SET LOCAL session_replication_role = replica")
            tx.execute(sql, params)
        else:
            names = [
                r[0]
                for r in tx.all(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%no_%'"
                )
            ]
            sqls = dict(tx.all("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
            for name in names:
                tx.execute(f"DROP TRIGGER {name}")
            tx.execute(sql, params)
            for name in names:
                tx.execute(sqls[name])

    gateway.store.run(work)


def test_python_refuses_an_entry_that_does_not_balance(gateway: Gateway) -> None:
    entry = EntryDraft(
        "test",
        "ref",
        "memo",
        date(2026, 1, 1),
        datetime(2026, 1, 1, tzinfo=UTC),
        (PostingDraft(1, 100, "CNY"), PostingDraft(2, -99, "CNY")),
    )
    with pytest.raises(LedgerError, match="does not balance in CNY"):
        ledger.check_entry(entry)
    with pytest.raises(LedgerError, match="two postings"):
        ledger.check_entry(
            EntryDraft(
                "t",
                "r",
                "m",
                date(2026, 1, 1),
                datetime(2026, 1, 1, tzinfo=UTC),
                (PostingDraft(1, 0, "CNY"),),
            )
        )
    mixed = EntryDraft(
        "t",
        "r",
        "m",
        date(2026, 1, 1),
        datetime(2026, 1, 1, tzinfo=UTC),
        (PostingDraft(1, 100, "CNY"), PostingDraft(2, -100, "USD")),
    )
    with pytest.raises(LedgerError, match="does not balance"):
        ledger.check_entry(mixed)


@pytest.mark.postgres
def test_postgresql_refuses_an_unbalanced_entry_the_code_did_not_check(
    pg_url: str, clock: FixedClock
) -> None:
    with Gateway.open(pg_url, clock=clock) as gateway:
        populate(gateway)
        ids = gateway.store.run(lambda tx: [r[0] for r in tx.all("SELECT id FROM ledger_accounts")])

        def sneak(tx: Tx) -> None:
            tx.execute("INSERT INTO journal_entries VALUES (5, 't', 'r', 'm', '2026-01-01', now())")
            tx.insert(
                "postings",
                ("id", "entry_id", "account_id", "amount", "currency"),
                [(6, 5, ids[0], 100, "CNY"), (7, 5, ids[1], -90, "CNY")],
            )

        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            gateway.store.run(sneak)
        assert gateway.verify().ok


def test_the_journal_is_append_only_in_the_database(gateway: Gateway) -> None:
    populate(gateway)
    errors = (psycopg.errors.RaiseException, sqlite3.IntegrityError)
    for sql in (
        "UPDATE postings SET amount = amount + 1",
        "DELETE FROM postings",
        "UPDATE journal_entries SET memo = 'x'",
        "DELETE FROM journal_entries",
    ):
        with pytest.raises(errors, match="append-only"):
            gateway.store.run(lambda tx, sql=sql: tx.execute(sql))
    assert gateway.verify().ok


def test_a_zero_posting_is_refused_by_a_check_constraint(gateway: Gateway) -> None:
    populate(gateway)
    with pytest.raises((psycopg.errors.CheckViolation, sqlite3.IntegrityError)):
        gateway.store.run(
            lambda tx: tx.execute(
                "INSERT INTO postings (id, entry_id, account_id, amount, currency) "
                "SELECT 1, MIN(entry_id), MIN(account_id), 0, 'CNY' FROM postings"
            )
        )


def test_audit_is_clean_after_ordinary_work(gateway: Gateway) -> None:
    populate(gateway)
    report = gateway.verify()
    assert report.ok, report.findings
    assert report.entries == 4 and report.sealed_entries == 4 and report.blocks >= 1


def test_an_edited_posting_is_found(gateway: Gateway) -> None:
    populate(gateway)
    target = gateway.store.run(lambda tx: tx.scalar("SELECT MAX(id) FROM postings"))
    raw(gateway, "UPDATE postings SET amount = amount + 1 WHERE id = :id", {"id": target})
    kinds = {f.kind for f in gateway.verify().findings}
    assert {"unbalanced_entry", "balance_mismatch", "entry_altered"} <= kinds


def test_a_deleted_posting_pair_that_still_balances_is_found_by_the_seal(gateway: Gateway) -> None:
    populate(gateway)
    entry = gateway.store.run(
        lambda tx: tx.scalar("SELECT entry_id FROM postings GROUP BY entry_id HAVING COUNT(*) = 4")
    )

    # drop the late-fee legs (debit customer, credit revenue) and fix the cached balances:
    # every sum still agrees; only the seal knows the entry changed.
    def tamper(tx: Tx) -> None:
        legs = tx.all(
            "SELECT id, account_id, amount FROM postings WHERE entry_id = :e ORDER BY id",
            {"e": entry},
        )
        for pid, account_id, amount in legs[2:]:
            tx.execute("DELETE FROM postings WHERE id = :id", {"id": pid})
            tx.execute(
                "UPDATE ledger_balances SET balance = balance - :a WHERE account_id = :acc "
                "AND shard = (SELECT MIN(shard) FROM ledger_balances WHERE account_id = :acc "
                "AND balance <> 0)",
                {"a": amount, "acc": account_id},
            )

    def run(tx: Tx) -> None:
        if tx.dialect == "postgresql":
            tx.execute("SET LOCAL session_replication_role = replica")
        else:
            tx.execute("DROP TRIGGER postings_no_delete")
        tamper(tx)

    gateway.store.run(run)
    findings = gateway.verify().findings
    assert [f.kind for f in findings] == ["entry_altered"]
    assert findings[0].subject == f"entry {entry}"


def test_a_deleted_entry_is_found(gateway: Gateway) -> None:
    populate(gateway)

    # an entry nothing else refers to: a transfer from clearing to bank, sealed
    def transfer(tx: Tx) -> int:
        accounts = ledger.LedgerAccounts()
        bank = accounts.ensure(tx, "bank:CNY", ledger.AccountKind.BANK, "CNY")
        clearing = accounts.ensure(
            tx, "clearing:kiosk:CNY", ledger.AccountKind.CHANNEL_CLEARING, "CNY"
        )
        [entry_id] = ledger.post(
            tx,
            [
                EntryDraft(
                    "settlement",
                    "settle:1",
                    "kiosk settles",
                    date(2026, 11, 26),
                    datetime(2026, 11, 26, tzinfo=UTC),
                    (PostingDraft(bank, 100, "CNY"), PostingDraft(clearing, -100, "CNY")),
                )
            ],
            accounts,
        )
        return entry_id

    entry = gateway.store.run(transfer)
    gateway.seal()
    assert gateway.verify().ok
    raw(gateway, "DELETE FROM postings WHERE entry_id = :e", {"e": entry})
    raw(gateway, "DELETE FROM journal_entries WHERE id = :e", {"e": entry})
    findings = gateway.verify().findings
    assert "entry_deleted" in {f.kind for f in findings}
    assert f"entry {entry}" in {f.subject for f in findings}


def test_a_rewritten_seal_block_breaks_the_chain(gateway: Gateway) -> None:
    populate(gateway)
    gateway.store.run(
        lambda tx: tx.execute(
            "UPDATE seal_blocks SET hash = :h WHERE block_no = 1", {"h": "f" * 64}
        )
    )
    kinds = {f.kind for f in gateway.verify().findings}
    assert "seal_hash" in kinds


def test_a_cached_balance_that_drifts_is_named(gateway: Gateway) -> None:
    populate(gateway)
    gateway.store.run(
        lambda tx: tx.execute(
            "UPDATE ledger_balances SET balance = balance + 1 WHERE shard = 0 AND account_id = "
            "(SELECT id FROM ledger_accounts WHERE code = 'receivable:A1')"
        )
    )
    [finding] = gateway.verify().findings
    assert finding.kind == "balance_mismatch" and finding.subject == "account receivable:A1"


def test_sealing_happens_after_commit_in_batches(db_url: str, clock: FixedClock) -> None:
    from paygate.config import Settings

    with Gateway.open(settings=Settings(database_url=db_url, seal_every=3), clock=clock) as gw:
        gw.open_account("A1")
        for n in range(7):
            gw.pay(
                PaymentIntent(
                    channel="pos",
                    channel_txn_id=f"P{n}",
                    account_no="A1",
                    amount=Money(100, "CNY"),
                    paid_at=clock.now(),
                )
            )
        report = gw.verify()
        assert report.sealed_entries == 6 and report.unsealed_entries == 1
    with Gateway.open(db_url, clock=clock) as gw:
        report = gw.verify()  # close() sealed the rest
        assert report.ok and report.unsealed_entries == 0 and report.sealed_entries == 7


def test_ledger_accounts_are_dated_by_the_gateways_clock(
    gateway: Gateway, clock: FixedClock
) -> None:
    """A receivable opened one by one or by a billing run, and a channel's clearing account
    made by its first payment, carry the Gateway's time, as the decision that made them does
    (the fixture's clock is a year before the machine's, at least)."""
    from paygate.models import NewAccount

    gateway.open_account("3100000001")
    gateway.open_accounts([NewAccount(account_no="3100000002")])
    clock.advance(timedelta(hours=3))
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K-1",
            account_no="3100000001",
            amount=Money(500, "CNY"),
            paid_at=clock.now(),
        )
    )
    rows = gateway.store.run(
        lambda tx: tx.all("SELECT code, created_at FROM ledger_accounts ORDER BY code"),
        write=False,
    )
    dated = {str(code): _aware(at) for code, at in rows}
    start = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert dated["receivable:3100000001"] == start
    assert dated["receivable:3100000002"] == start
    assert dated["clearing:kiosk:CNY"] == start + timedelta(hours=3)
    assert all(at <= start + timedelta(hours=3) for at in dated.values()), dated


def _aware(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
