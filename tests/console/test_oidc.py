"""Sign-in through the utility's identity provider: the whole flow against a fake provider on a
real uvicorn server, driven over HTTP through the real console, on both databases; and every
way it must refuse, with nobody signed in and the refusal on the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from pydantic import SecretStr

from paygate.api.app import create_app
from paygate.console.auth import OIDC_COOKIE, SESSION_COOKIE, ConsoleSettings
from paygate.console.oidc import OidcSettings
from paygate.console.staff import Role
from tests.api.support import LiveServer, settings_for
from tests.console.conftest import ConsoleWorld
from tests.console.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeProvider, rsa_key, serve
from tests.console.support import PASSWORD, StaffClient

PROVIDER = "统一身份认证"
CLERK_EMAIL = "li.clerk@grid.example"


@pytest.fixture
def provider(world: ConsoleWorld) -> Iterator[FakeProvider]:
    """The fake provider, on its own port, sharing the story's clock; the clerk is linked."""
    world.staff.link("li.clerk", CLERK_EMAIL)
    with serve(FakeProvider(world.clock)) as running:
        running.signs_in(CLERK_EMAIL)
        yield running


def _console(
    db_url: str, world: ConsoleWorld, provider: FakeProvider, **console: object
) -> LiveServer:
    holder: list[LiveServer] = []

    def app() -> object:
        oidc = OidcSettings(
            provider_name=PROVIDER,
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            redirect_url=f"{holder[0].url}/console/oidc/callback",
        )
        return create_app(
            settings_for(db_url),
            clock=world.clock,
            console=ConsoleSettings(oidc=oidc, **console),  # type: ignore[arg-type]
        )

    server = LiveServer(app)  # type: ignore[arg-type]
    holder.append(server)
    return server


@pytest.fixture
def console(db_url: str, world: ConsoleWorld, provider: FakeProvider) -> Iterator[LiveServer]:
    """The console with the provider configured, password sign-in open to every role."""
    with _console(db_url, world, provider) as running:
        yield running


@pytest.fixture
def browser(console: LiveServer) -> Iterator[StaffClient]:
    """A browser-like client of the console (cookies kept, no redirect followed)."""
    client = StaffClient(console.url)
    try:
        yield client
    finally:
        client.close()


def to_provider(browser: StaffClient) -> httpx.Response:
    """The sign-in page's button: the answer sending the browser to the provider."""
    page = browser.http.get("/console/sign-in")
    assert 'href="/console/oidc/start?next=' in page.text
    started = browser.http.get("/console/oidc/start", params={"next": "/console/promise"})
    assert started.status_code == 303, started.text
    return started


def at_provider(started: httpx.Response) -> str:
    """The provider's redirect back to the console (the callback URL with code and state)."""
    answer = httpx.get(started.headers["location"], follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def sign_in(browser: StaffClient) -> httpx.Response:
    """The whole round trip: button, provider, callback."""
    return browser.http.get(at_provider(to_provider(browser)))


def sessions(world: ConsoleWorld) -> int:
    return int(
        world.gateway.store.run(
            lambda tx: tx.scalar("SELECT COUNT(*) FROM console_sessions"), write=False
        )
    )


def trail(world: ConsoleWorld) -> list[tuple[str, str | None, str, str | None]]:
    """The sign-in rows of the audit trail, oldest first: user, role, outcome, detail."""
    rows = world.gateway.store.run(
        lambda tx: tx.all(
            "SELECT username, role, outcome, detail FROM console_audit "
            "WHERE action = 'sign_in' ORDER BY id"
        ),
        write=False,
    )
    return [(str(r[0]), r[1], str(r[2]), r[3]) for r in rows]


def assert_nobody_signed_in(browser: StaffClient, world: ConsoleWorld, before: int) -> None:
    assert sessions(world) == before
    assert SESSION_COOKIE not in browser.http.cookies
    answer = browser.http.get("/console/search", params={"q": "3100000001"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")


# -- the way in ---------------------------------------------------------------------------------


def test_a_clerk_signs_in_through_the_provider_with_pkce_state_and_nonce(
    browser: StaffClient, provider: FakeProvider, world: ConsoleWorld
) -> None:
    """The clerk clicks the button, signs in at the provider, and is in the console with the
    local role; the request carried state, nonce and an S256 challenge the provider checked."""
    stale = "a-session-token-planted-before-sign-in"
    browser.http.cookies.set(SESSION_COOKIE, stale, domain="127.0.0.1", path="/console")
    started = to_provider(browser)
    location = urlsplit(started.headers["location"])
    assert location.netloc == urlsplit(provider.issuer).netloc
    binding = started.headers["set-cookie"]
    assert OIDC_COOKIE in binding and "SameSite=lax" in binding and "HttpOnly" in binding
    assert "Path=/console/oidc" in binding
    asked = parse_qs(location.query)
    assert asked["code_challenge_method"] == ["S256"]
    assert len(asked["state"][0]) >= 32 and len(asked["nonce"][0]) >= 32
    assert asked["scope"] == ["openid email profile"]

    done = browser.http.get(at_provider(started))
    assert done.status_code == 200, done.text
    assert 'http-equiv="refresh"' in done.text and "/console/promise" in done.text
    token = browser.http.cookies.get(SESSION_COOKIE)
    assert token and token != stale  # a new session id, whatever came in
    cookie = next(v for k, v in done.headers.multi_items() if v.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert len(provider.redeemed) == 1  # the code, with the right verifier and secret

    page = browser.http.get("/console/promise")
    assert page.status_code == 200
    assert "li" in page.text and "营业员" in page.text
    assert trail(world)[-1] == ("li.clerk", "clerk", "done", f"oidc: {PROVIDER}")
    assert OIDC_COOKIE not in browser.http.cookies  # the binding is spent


def test_the_session_is_the_same_as_a_password_session(
    browser: StaffClient, world: ConsoleWorld
) -> None:
    """Signed in through the provider, the clerk's forms carry the session's CSRF token, and
    signing out ends the session on the server."""
    assert sign_in(browser).status_code == 200
    token = browser.http.cookies.get(SESSION_COOKIE)
    signed = world.staff.session(token)
    assert signed is not None and signed.member.role is Role.CLERK
    page = browser.http.get("/console/search")
    assert signed.csrf_token in page.text
    out = browser.http.post(
        "/console/sign-out",
        data={"csrf_token": signed.csrf_token},
        headers={"Origin": browser.base_url},
    )
    assert out.status_code == 200
    assert world.staff.session(token) is None


def test_password_sign_in_still_works_beside_the_provider(
    browser: StaffClient, world: ConsoleWorld
) -> None:
    page = browser.http.get("/console/sign-in")
    assert f"使用{PROVIDER}登录" in page.text
    assert browser.sign_in("wang.finance", PASSWORD).status_code == 303
    assert trail(world)[-1] == ("wang.finance", "finance", "done", "password")


def test_without_a_provider_the_page_has_no_button_and_the_routes_are_not_there(
    clients: object, server: LiveServer
) -> None:
    with httpx.Client(base_url=server.url) as plain:
        assert "/console/oidc/start" not in plain.get("/console/sign-in").text
        assert plain.get("/console/oidc/start").status_code == 404
        assert plain.get("/console/oidc/callback?code=x&state=y").status_code == 404


def test_password_sign_in_can_be_kept_for_the_admin_alone(
    db_url: str, world: ConsoleWorld, provider: FakeProvider
) -> None:
    """With password_sign_in = admin, a clerk's right password is refused with the way to the
    provider, the admin's is not, and the clerk still signs in through the provider."""
    with _console(db_url, world, provider, password_roles=frozenset({Role.ADMIN})) as served:
        clerk = StaffClient(served.url)
        admin = StaffClient(served.url)
        try:
            refused = clerk.sign_in("li.clerk", PASSWORD)
            assert refused.status_code == 401
            assert "须通过统一身份认证登录" in refused.text
            assert SESSION_COOKIE not in clerk.http.cookies
            assert admin.sign_in("chen.admin", PASSWORD).status_code == 303
            assert sign_in(clerk).status_code == 200
            assert trail(world)[-3:] == [
                ("li.clerk", None, "refused", "password: signs in through the provider"),
                ("chen.admin", "admin", "done", "password"),
                ("li.clerk", "clerk", "done", f"oidc: {PROVIDER}"),
            ]
        finally:
            clerk.close()
            admin.close()


# -- what is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "why"),
    [
        ("forged", "signature is not valid"),
        ("unknown_key", "key the provider does not publish"),
        ("audience", "'aud'"),
        ("issuer", "'iss'"),
        ("expired", "expired"),
        ("nonce", "'nonce'"),
        ("unverified_email", "not verified"),
        ("not_a_name", "email claim is not a name"),
    ],
)
def test_a_token_that_fails_a_check_signs_nobody_in(
    browser: StaffClient, provider: FakeProvider, world: ConsoleWorld, knob: str, why: str
) -> None:
    now = int(world.clock.now().timestamp())
    if knob == "forged":  # another key, claiming the provider's key id
        provider.sign_with = rsa_key(provider.key.kid or "key-1")
    elif knob == "unknown_key":
        provider.sign_with = rsa_key("not-published")
    else:
        provider.tamper = {
            "audience": {"aud": "another-client"},
            "issuer": {"iss": "https://idp.elsewhere.example"},
            "expired": {"iat": now - 900, "exp": now - 120},  # past the 60 s leeway
            "nonce": {"nonce": "a-nonce-of-another-request"},
            "unverified_email": {"email_verified": False},
            "not_a_name": {"email": "li.clerk@grid.example\r\nX-Injected: 1"},
        }[knob]
    before = sessions(world)
    answer = sign_in(browser)
    assert answer.status_code == 403, answer.text
    assert "未通过校验" in answer.text
    assert_nobody_signed_in(browser, world, before)
    user, role, outcome, detail = trail(world)[-1]
    assert (user, role, outcome) == ("-", None, "refused")
    assert detail is not None and detail.startswith("oidc: id_token") and why in detail


def test_a_token_within_the_leeway_is_accepted(
    browser: StaffClient, provider: FakeProvider, world: ConsoleWorld
) -> None:
    """A provider whose clock is a little ahead or behind still signs staff in."""
    now = int(world.clock.now().timestamp())
    provider.tamper = {"iat": now - 330, "exp": now - 30}
    assert sign_in(browser).status_code == 200


def test_a_state_that_is_not_the_requests_is_refused(
    browser: StaffClient, world: ConsoleWorld
) -> None:
    callback = urlsplit(at_provider(to_provider(browser)))
    query = parse_qs(callback.query)
    query["state"] = ["a-state-the-console-never-gave"]
    forged = urlunsplit(callback._replace(query=urlencode(query, doseq=True)))
    before = sessions(world)
    answer = browser.http.get(forged)
    assert answer.status_code == 403
    assert "登录请求已失效" in answer.text
    assert_nobody_signed_in(browser, world, before)
    assert trail(world)[-1][2:] == ("refused", "oidc: the callback's state is not the request's")


def test_a_replayed_callback_is_refused(
    browser: StaffClient, world: ConsoleWorld, provider: FakeProvider
) -> None:
    """The same callback URL twice (a reload, a copy from the history, an eavesdropper): the
    first signs in, the second finds no flow, even with the binding cookie put back."""
    started = to_provider(browser)
    binding = browser.http.cookies.get(OIDC_COOKIE)
    callback = at_provider(started)
    assert browser.http.get(callback).status_code == 200
    after = sessions(world)
    browser.http.cookies.clear()
    browser.http.cookies.set(OIDC_COOKIE, binding or "", domain="127.0.0.1", path="/console/oidc")
    again = browser.http.get(callback)
    assert again.status_code == 403
    assert SESSION_COOKIE not in browser.http.cookies
    assert sessions(world) == after
    assert len(provider.redeemed) == 1  # the code was not even sent again


def test_a_callback_in_another_browser_is_refused(
    browser: StaffClient, console: LiveServer, world: ConsoleWorld
) -> None:
    """An attacker's own callback (their code and state) planted in a victim's browser
    signs the victim in as nobody: the flow is bound to the browser that began it."""
    callback = at_provider(to_provider(browser))  # the attacker's round trip, stopped short
    victim = StaffClient(console.url)
    try:
        before = sessions(world)
        answer = victim.http.get(callback)
        assert answer.status_code == 403
        assert_nobody_signed_in(victim, world, before)
    finally:
        victim.close()


def test_a_flow_older_than_its_lifetime_is_refused(
    browser: StaffClient, world: ConsoleWorld
) -> None:
    callback = at_provider(to_provider(browser))
    world.clock.advance(timedelta(minutes=11))
    before = sessions(world)
    assert browser.http.get(callback).status_code == 403
    assert_nobody_signed_in(browser, world, before)


def test_an_identity_no_staff_member_is_linked_to_is_refused(
    browser: StaffClient, provider: FakeProvider, world: ConsoleWorld
) -> None:
    provider.signs_in("stranger@grid.example")
    before = sessions(world)
    answer = sign_in(browser)
    assert answer.status_code == 403
    assert "未登记为营业厅员工" in answer.text
    assert_nobody_signed_in(browser, world, before)
    assert trail(world)[-1] == (
        "stranger@grid.example",
        None,
        "refused",
        "oidc: no staff member is linked to this identity",
    )


def test_a_disabled_staff_member_is_refused(browser: StaffClient, world: ConsoleWorld) -> None:
    world.staff.disable("li.clerk")
    before = sessions(world)
    answer = sign_in(browser)
    assert answer.status_code == 403
    assert "已停用" in answer.text
    assert_nobody_signed_in(browser, world, before)
    assert trail(world)[-1] == (
        CLERK_EMAIL,
        None,
        "refused",
        "oidc: staff member li.clerk is disabled",
    )


def test_the_provider_saying_no_is_refused(
    browser: StaffClient, provider: FakeProvider, world: ConsoleWorld
) -> None:
    provider.deny = "access_denied"
    before = sessions(world)
    answer = sign_in(browser)
    assert answer.status_code == 403
    assert "未同意" in answer.text
    assert_nobody_signed_in(browser, world, before)
    assert trail(world)[-1][3] == "oidc: the provider answered access_denied"


def test_an_unreachable_provider_is_a_clear_refusal(
    browser: StaffClient, provider: FakeProvider, world: ConsoleWorld
) -> None:
    """Down before the button (discovery) and down between the redirect and the code
    exchange: each a page saying so, nobody signed in."""
    assert provider.server is not None
    callback = at_provider(to_provider(browser))  # discovery now known to the console
    provider.server.stop()
    before = sessions(world)
    answer = browser.http.get(callback)
    assert answer.status_code == 502
    assert "暂时无法连接统一身份认证" in answer.text
    assert_nobody_signed_in(browser, world, before)
    assert trail(world)[-1][3] == "oidc: token: the provider cannot be reached (ConnectError)"


def test_an_unreachable_provider_at_the_button(
    db_url: str, world: ConsoleWorld, provider: FakeProvider
) -> None:
    with _console(db_url, world, provider) as served:
        assert provider.server is not None
        provider.server.stop()
        client = StaffClient(served.url)
        try:
            answer = client.http.get("/console/oidc/start")
            assert answer.status_code == 502
            assert "暂时无法连接统一身份认证" in answer.text
            assert OIDC_COOKIE not in client.http.cookies
        finally:
            client.close()
    assert trail(world)[-1][3] == "oidc: discovery: the provider cannot be reached (ConnectError)"
