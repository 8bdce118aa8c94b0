"""The console's parts on their own: the catalogue covers every template in both languages,
the lockout against a model (hypothesis), a negotiation approved again after a crash, the
audit trail's two rows, and requests the guard refuses before any work."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate.clock import FixedClock
from paygate.console.audit import AuditTrail
from paygate.console.i18n import CATALOGUE, LANGUAGES, Translator
from paygate.console.negotiations import Negotiations, order_reason
from paygate.console.staff import Role, SignInRefusedError, StaffPolicy, StaffRegistry
from paygate.console.views import search_accounts
from paygate.errors import InvalidStateError
from paygate.gateway import Gateway
from paygate.models import PaymentIntent, SupplyState
from paygate.money import Money
from paygate.promise import Severity, Step
from paygate.supply import OrderStatus
from tests.api.support import LiveServer
from tests.console.conftest import Clients, ConsoleWorld
from tests.console.support import FAST_HASHER, HOSPITAL, PASSWORD

TEMPLATES = Path(__file__).resolve().parents[2] / "paygate" / "console" / "templates"
SOURCES = [*TEMPLATES.glob("*.html"), TEMPLATES.parent / "routes.py"]


def test_every_action_on_the_trail_has_its_words_in_the_catalogue() -> None:
    routes = (TEMPLATES.parent / "routes.py").read_text()
    actions = set(re.findall(r'_act\(\s*page,\s*"([a-z_]+)"', routes))
    actions |= set(re.findall(r'\.record\([^)]*?"(sign_in|sign_out)"', routes, re.S))
    staff = (TEMPLATES.parents[1] / "cli" / "staff.py").read_text()
    actions |= set(re.findall(r'_audited\(\s*database_url,\s*"([a-z_]+)"', staff))
    assert len(actions) >= 14, actions
    missing = {a for a in actions if f"audit.action.{a}" not in CATALOGUE}
    assert not missing, missing
    for outcome in ("requested", "done", "refused"):
        assert f"audit.outcome.{outcome}" in CATALOGUE


def test_every_word_a_page_uses_is_in_the_catalogue_in_both_languages() -> None:
    used: set[str] = set()
    for source in SOURCES:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", source.read_text()))
    families = {k for k in used if k.endswith(".")}  # t("supply." ~ state) and the like
    used -= families
    assert len(used) > 60
    assert used <= set(CATALOGUE), sorted(used - set(CATALOGUE))
    values = {
        "supply.": [s.value for s in SupplyState],
        "severity.": [s.value for s in Severity],
        "step.": [s.value for s in Step],
        "order.status.": [s.value for s in OrderStatus],
        "order.": ["reconnect", "disconnect"],
        "role.": [r.value for r in Role],
        "matched.": ["account_no", "meter_address", "payment_reference"],
        "notice.": ["notice", "final_reminder"],
    }
    assert families <= set(values), families - set(values)
    for prefix in families:
        for value in values[prefix]:
            assert f"{prefix}{value}" in CATALOGUE
    for key, texts in CATALOGUE.items():
        assert len(texts) == len(LANGUAGES) and all(t.strip() for t in texts), key
    assert {"电费", "违约金", "欠费", "停电", "复电", "服务承诺", "对账", "挂账"} <= {
        word
        for word in ("电费", "违约金", "欠费", "停电", "复电", "服务承诺", "对账", "挂账")
        if any(word in zh for zh, _ in CATALOGUE.values())
    }
    assert {CATALOGUE[f"severity.{s}"][0] for s in ("minor", "major", "critical")} == {
        "差错",
        "障碍",
        "事故",
    }


def test_money_and_times_are_written_for_the_reader() -> None:
    zh = Translator("zh-CN", "Asia/Shanghai")
    assert zh.money(Money(123456789, "CNY")) == "¥1,234,567.89"
    assert Translator("fr", "Asia/Shanghai").language == "zh-CN"
    assert Translator("en", "UTC").money(Money(5, "USD")) == "0.05 USD"
    with pytest.raises(KeyError):
        zh("no.such.key")


ATTEMPTS = st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=1, max_size=12)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=ATTEMPTS)
def test_the_lockout_follows_its_rule_for_any_sequence_of_attempts(
    world: ConsoleWorld, attempts: list[tuple[bool, int]]
) -> None:
    """Whatever the order of right and wrong passwords and of waits, a sign-in succeeds
    exactly when the model says: the password is right and no lockout is running."""
    policy = StaffPolicy(max_failures=3, lockout=timedelta(minutes=10))
    clock = FixedClock(world.clock.now())
    staff = StaffRegistry(world.gateway.store, clock, policy, hasher=FAST_HASHER)
    name = f"p{abs(hash(tuple(attempts))) % 10**12}"
    staff.add(name, "clerk", PASSWORD)
    failures, locked_until = 0, None
    for right, minutes in attempts:
        clock.advance(timedelta(minutes=minutes))
        now = clock.now()
        locked = locked_until is not None and now < locked_until
        try:
            staff.sign_in(name, PASSWORD if right else "wrong password here")
            succeeded = True
        except SignInRefusedError:
            succeeded = False
        assert succeeded == (right and not locked)
        if succeeded:
            failures, locked_until = 0, None
        elif not right and not locked:
            failures += 1
            if failures >= policy.max_failures:
                failures, locked_until = 0, now + policy.lockout


def test_an_approval_asked_again_after_a_crash_links_the_order_it_made(
    world: ConsoleWorld,
) -> None:
    negotiations = Negotiations(world.gateway)
    negotiation = negotiations.record(
        HOSPITAL, counterpart="后勤处", agreed_on=date(2026, 11, 28), terms="夜间停电",
        recorded_by="zhao.supervisor",
    )  # fmt: skip
    # The order was made, then the process died before the negotiation was updated.
    order = world.gateway.order_disconnection(
        HOSPITAL, approved_by="zhao.supervisor", negotiated=True, reason=order_reason(negotiation)
    )
    assert negotiations.approve(negotiation, approved_by="zhao.supervisor") == order
    assert negotiations.get(negotiation).order_id == order
    with pytest.raises(InvalidStateError):
        negotiations.approve(negotiation, approved_by="zhao.supervisor")
    orders = world.gateway.store.run(
        lambda tx: tx.scalar("SELECT COUNT(*) FROM supply_orders WHERE kind = 'disconnect'"),
        write=False,
    )
    assert orders == 1


def test_an_action_that_dies_leaves_its_request_on_the_trail(world: ConsoleWorld) -> None:
    trail = AuditTrail(world.gateway.store, world.clock)

    def dies() -> None:
        raise RuntimeError("the worker was killed")

    with pytest.raises(RuntimeError):
        trail.act("li.clerk", "clerk", "serve_notice", HOSPITAL, "arrears", dies)
    [row] = trail.recent()
    assert (row.username, row.outcome, row.reason) == ("li.clerk", "requested", "arrears")


def test_the_guard_refuses_what_it_cannot_read(
    server: LiveServer, world: ConsoleWorld, clients: Clients
) -> None:
    clerk = clients.signed_in("li.clerk")
    token = clerk.csrf()
    path = f"/console/accounts/{HOSPITAL}/notice"
    huge = clerk.http.post(
        path,
        content=b"csrf_token=" + token.encode() + b"&reason=" + b"x" * 20_000,
        headers={"Origin": server.url, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 403
    assert clerk.http.get("/console/static/../staff.py").status_code == 404
    assert clerk.http.get("/console/static/console.css").status_code == 200
    assert clerk.http.get("/console/accounts/9999999999").status_code == 404
    away = clerk.http.get("/console/language/en", params={"next": "//evil.example/x"})
    assert away.headers["location"] == "/console/search"
    page = clerk.http.get("/console/search")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert (
        world.gateway.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM dunning_notices"), write=False
        )
        == 0
    )


def test_search_reads_the_channels_that_took_money_from_the_payments(gateway: Gateway) -> None:
    """Before any payment, a search finds accounts and no reference; afterwards the payment is
    found by its reference, and nothing else is (an exact reference, not a prefix of one)."""
    gateway.open_account("3200000001", name="王五")
    assert [h.account_no for h in search_accounts(gateway, "32000")] == ["3200000001"]
    assert search_accounts(gateway, "K0001:cash-7") == []
    gateway.pay(
        PaymentIntent(
            channel="kiosk",
            channel_txn_id="K0001:cash-7",
            account_no="3200000001",
            amount=Money(1_000, "CNY"),
            paid_at=gateway.clock.now(),
        )
    )
    found = search_accounts(gateway, "K0001:cash-7")
    assert [(h.account_no, h.matched) for h in found] == [("3200000001", "payment_reference")]
    assert search_accounts(gateway, "K0001:cash-") == []
