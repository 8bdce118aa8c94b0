"""The console's security over real HTTP: session fixation, CSRF and origin, authorisation on
every route, nothing of an account to a signed-out visitor, passwords never logged."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from starlette.requests import Request

from paygate.console.auth import PERMISSIONS, ConsoleSettings, CookieSecurity, Permission
from paygate.console.routes import ROUTES
from paygate.console.staff import Role
from tests.api.support import LiveServer
from tests.console.conftest import MAX_FAILURES, Clients, ConsoleWorld
from tests.console.support import DISCONNECTED, PASSWORD, STAFF

ROLE_USER = {Role(role): username for username, role in STAFF.items()}


def count(world: ConsoleWorld, sql: str) -> int:
    return int(world.gateway.store.run(lambda tx: tx.scalar(sql), write=False))


def session_cookie(answer: httpx.Response) -> str:
    cookies = answer.headers.get_list("set-cookie")
    found = [c for c in cookies if c.startswith("paygate_console=")]
    assert len(found) == 1, cookies
    return found[0]


def test_sign_in_never_adopts_a_planted_session_token(server: LiveServer, clients: Clients) -> None:
    client = clients.new()
    client.http.cookies.set("paygate_console", "planted-by-an-attacker", path="/console")
    answer = client.sign_in("li.clerk")
    assert answer.status_code == 303
    cookie = session_cookie(answer)
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token != "planted-by-an-attacker" and len(token) >= 40
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback, "auto"
    attacker = clients.raw("planted-by-an-attacker")
    assert attacker.get(f"/console/accounts/{DISCONNECTED}").status_code == 303


def test_a_second_sign_in_gets_a_new_session_and_ends_the_old_one(
    server: LiveServer, clients: Clients
) -> None:
    client = clients.signed_in("li.clerk")
    clerk_token = client.http.cookies.get("paygate_console")
    # Signing in again from the same browser (the form posted with this session's token).
    answer = client.post("/console/sign-in", {"username": "wang.finance", "password": PASSWORD})
    assert answer.status_code == 303
    finance_token = session_cookie(answer).split(";")[0].split("=", 1)[1]
    assert finance_token != clerk_token
    old = clients.raw(str(clerk_token))
    assert old.get("/console/finance").status_code == 303  # ended, never promoted
    assert old.get("/console/search").status_code == 303
    assert client.http.get("/console/finance").status_code == 200


def test_sign_out_ends_the_session_on_the_server(server: LiveServer, clients: Clients) -> None:
    client = clients.signed_in("li.clerk")
    token = str(client.http.cookies.get("paygate_console"))
    assert client.http.get("/console/search").status_code == 200
    answer = client.post("/console/sign-out", {})
    assert answer.status_code == 200
    replay = clients.raw(token)
    assert replay.get("/console/search").status_code == 303


def notices(world: ConsoleWorld) -> int:
    return count(world, "SELECT COUNT(*) FROM dunning_notices")


def test_an_action_without_the_sessions_token_or_from_elsewhere_is_refused(
    server: LiveServer, world: ConsoleWorld, clients: Clients
) -> None:
    clerk = clients.signed_in("li.clerk")
    other = clients.signed_in("zhao.supervisor")
    path = f"/console/accounts/{DISCONNECTED}/notice"
    form = {"kind": "notice", "reason": "arrears over 30 days"}
    refusals = [
        clerk.http.post(path, data=form, headers={"Origin": server.url}),  # no token
        clerk.post(path, form, csrf="forged-token"),
        clerk.post(path, form, csrf=other.csrf()),  # another session's token
        clerk.post(path, form, origin=False),  # neither Origin nor Referer
    ]
    token = clerk.csrf()
    refusals.append(
        clerk.http.post(
            path, data={**form, "csrf_token": token}, headers={"Origin": "http://evil.example"}
        )
    )
    refusals.append(
        clerk.http.post(
            path,
            data={**form, "csrf_token": token},
            headers={"Referer": "http://evil.example/console/search"},
        )
    )
    refusals.append(
        clerk.http.post(
            path,
            content=f'{{"csrf_token": "{token}"}}',
            headers={"Origin": server.url, "Content-Type": "application/json"},
        )
    )
    for answer in refusals:
        assert answer.status_code == 403, answer.text
    assert notices(world) == 0
    done = clerk.post(path, form)
    assert done.status_code == 303, done.text
    assert notices(world) == 1
    # Same origin by Referer alone is accepted.
    again = clerk.http.post(
        path,
        data={"kind": "final_reminder", "reason": "second letter", "csrf_token": token},
        headers={"Referer": f"{server.url}/console/accounts/{DISCONNECTED}"},
    )
    assert again.status_code == 303 and notices(world) == 2


def test_the_sign_in_form_is_protected_too(
    server: LiveServer, world: ConsoleWorld, clients: Clients
) -> None:
    client = clients.new()
    client.http.get("/console/sign-in")
    forged = client.http.post(
        "/console/sign-in",
        data={"csrf_token": "guess", "username": "li.clerk", "password": PASSWORD},
        headers={"Origin": server.url},
    )
    assert forged.status_code == 403
    assert "paygate_console=" not in " ".join(forged.headers.get_list("set-cookie"))


def _concrete(path: str, world: ConsoleWorld) -> str:
    values = {
        "account_no": DISCONNECTED,
        "negotiation_id": "1",
        "order_id": str(world.story.failed_order),
        "run_id": str(world.story.kiosk_run),
        "seq": "1",
        "item_id": str(world.story.suspense_item),
        "finding_id": "1",
        "name": "htmx.min.js",
        "code": "en",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


GUARDED = [(m, p, perm) for m, p, perm in ROUTES if perm is not None]


def test_every_action_and_page_is_declared_with_a_permission() -> None:
    open_routes = {(m, p) for m, p, perm in ROUTES if perm is None}
    assert open_routes == {
        ("GET", "/console/sign-in"),
        ("POST", "/console/sign-in"),
        ("POST", "/console/sign-out"),
        ("GET", "/console/language/{code}"),
        ("GET", "/console/static/{name}"),
        # the way in through the identity provider (404 when none is configured)
        ("GET", "/console/oidc/start"),
        ("GET", "/console/oidc/callback"),
    }
    assert {perm for _, _, perm in GUARDED} == set(Permission)


def test_every_route_refuses_a_signed_out_visitor_and_the_wrong_roles(
    server: LiveServer, world: ConsoleWorld, clients: Clients
) -> None:
    staff = {role: clients.signed_in(ROLE_USER[role]) for role in Role}
    visitor = clients.new()
    before = count(world, "SELECT COUNT(*) FROM console_audit WHERE outcome <> 'requested'")
    journal = count(world, "SELECT COUNT(*) FROM journal_entries")
    for method, template, permission in GUARDED:
        path = _concrete(template, world)
        form = {"reason": "checking the guard", "kind": "notice", "account_no": DISCONNECTED}
        if method == "GET":
            answer = visitor.http.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/sign-in")
        else:
            token = visitor.http.get("/console/sign-in")
            answer = visitor.http.post(path, data=form, headers={"Origin": server.url})
            assert token.status_code == 200 and answer.status_code == 401, path
        assert "张三" not in answer.text and "1,010.00" not in answer.text
        for role, client in staff.items():
            allowed = role in PERMISSIONS[permission]
            if method == "GET":
                answer = client.http.get(path)
            else:
                answer = client.post(path, form) if not allowed else None  # allowed: below
            if answer is None:
                continue
            if allowed:
                assert answer.status_code in (200, 303), (path, role, answer.status_code)
            else:
                assert answer.status_code == 403, (path, role, answer.status_code)
                assert "张三" not in answer.text
    # Nothing was done by any refused request.
    assert count(world, "SELECT COUNT(*) FROM console_audit WHERE action <> 'sign_in'") == 0
    assert count(world, "SELECT COUNT(*) FROM journal_entries") == journal
    assert before >= 0


def test_every_action_route_refuses_a_forged_form_from_the_role_allowed_to_act(
    server: LiveServer, world: ConsoleWorld, clients: Clients
) -> None:
    """Each POST route, posted by a staff member whose role may act, with every field the
    action needs, is refused (403) without the session's token, with another token, or from
    another origin; nothing is done and nothing but the sign-ins is on the trail. Sign-out is
    guarded the same way: a forged one leaves the session as it was."""
    journal = count(world, "SELECT COUNT(*) FROM journal_entries")
    orders = count(world, "SELECT COUNT(*) FROM supply_orders WHERE status = 'failed'")
    posts = [(p, perm) for m, p, perm in GUARDED if m == "POST"]
    assert len(posts) == 9  # notice, negotiation, approval, retry, five of finance
    form = {
        "reason": "forged", "kind": "notice", "account_no": DISCONNECTED, "action": "confirmed",
        "counterpart": "王主任", "agreed_on": "2026-12-20", "terms": "备用电源就绪",
        "route": "alipay", "resolution_id": "r-forged",
    }  # fmt: skip
    for template, permission in posts:
        role = min(PERMISSIONS[permission])
        client = clients.signed_in(ROLE_USER[role])
        path = _concrete(template, world)
        token = client.csrf()
        refusals = {
            "no token": client.http.post(path, data=form, headers={"Origin": server.url}),
            "forged token": client.post(path, form, csrf="forged-" + token[7:]),
            "other origin": client.http.post(
                path, data={**form, "csrf_token": token}, headers={"Origin": "http://evil.example"}
            ),
            "no origin": client.post(path, form, origin=False),
        }
        for how, answer in refusals.items():
            assert answer.status_code == 403, (path, role, how, answer.status_code)
            assert "表单已失效或来源不符" in answer.text
    assert count(world, "SELECT COUNT(*) FROM console_audit WHERE action <> 'sign_in'") == 0
    assert count(world, "SELECT COUNT(*) FROM journal_entries") == journal
    assert count(world, "SELECT COUNT(*) FROM dunning_notices") == 0
    assert count(world, "SELECT COUNT(*) FROM console_negotiations") == 0
    assert count(world, "SELECT COUNT(*) FROM supply_orders WHERE status = 'failed'") == orders
    clerk = clients.signed_in("li.clerk")
    forged = clerk.http.post("/console/sign-out", data={}, headers={"Origin": server.url})
    assert forged.status_code == 403
    assert clerk.http.get("/console/search").status_code == 200  # still signed in


def test_a_signed_out_visitor_sees_no_account_data(server: LiveServer, clients: Clients) -> None:
    visitor = clients.raw()
    for path in (
        f"/console/accounts/{DISCONNECTED}",
        "/console/search?q=3100",
        "/console/search?q=K0001:cash-2001",
        "/console/finance",
        "/console/promise",
        "/console/audit",
    ):
        answer = visitor.get(path, follow_redirects=True)
        assert answer.status_code == 200 and 'action="/console/sign-in"' in answer.text
        for secret in ("张三", "李四", "医院", "1,010.00", "3100000003", "cash-9001"):
            assert secret not in answer.text, (path, secret)


def test_lockout_over_http_refuses_even_the_right_password(
    server: LiveServer, world: ConsoleWorld, clients: Clients
) -> None:
    client = clients.new()
    for _ in range(MAX_FAILURES):
        answer = client.sign_in("li.clerk", "wrong password, typed again")
        assert answer.status_code == 401 and "锁定" in answer.text
    assert client.sign_in("li.clerk").status_code == 401
    assert client.sign_in("wang.finance").status_code == 303
    refused = count(
        world,
        "SELECT COUNT(*) FROM console_audit WHERE action = 'sign_in' AND outcome = 'refused'",
    )
    assert refused == MAX_FAILURES + 1


def test_staff_passwords_are_never_logged_nor_audited(
    server: LiveServer, world: ConsoleWorld, clients: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "my-wrong-secret-Passw0rd"
    client = clients.new()
    assert client.sign_in("li.clerk", wrong).status_code == 401
    assert client.sign_in(wrong, PASSWORD).status_code == 401  # a password typed as the name
    assert client.sign_in("li.clerk").status_code == 303
    client.post(f"/console/accounts/{DISCONNECTED}/notice", {"reason": "letter sent"})
    access = [r for r in caplog.records if r.name == "paygate.access"]
    assert any(getattr(r, "path", "") == "/console/sign-in" for r in access)
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert PASSWORD not in text and wrong not in text
    trail = world.gateway.store.run(
        lambda tx: tx.all("SELECT username, subject, reason, detail FROM console_audit"),
        write=False,
    )
    flat = " ".join(str(v) for row in trail for v in row)
    assert PASSWORD not in flat and "li.clerk" in flat
    # A password typed into the name field is not a staff member's name: never written down.
    assert wrong not in flat and wrong.lower() not in flat and PASSWORD.lower() not in flat
    assert "not a staff member's name" in flat


def _request(scheme: str) -> Request:
    return Request(
        {"type": "http", "scheme": scheme, "method": "GET", "path": "/", "headers": [],
         "server": ("console.example", 443)}
    )  # fmt: skip


def test_cookies_are_secure_over_tls_or_when_told() -> None:
    auto = ConsoleSettings()
    assert auto.secure(_request("https")) and not auto.secure(_request("http"))
    assert ConsoleSettings(secure_cookies=CookieSecurity.ALWAYS).secure(_request("http"))
    assert not ConsoleSettings(secure_cookies=CookieSecurity.NEVER).secure(_request("https"))
