"""The console's routes: pages (GET) and staff actions (POST), each behind its permission.

Every route is declared with :func:`_route`, which names its :class:`Permission`; the guard
there signs the visitor in from the session cookie, refuses a missing session or role, checks
an unsafe request's CSRF token and origin, and only then calls the route. Actions go through
the audit trail (:class:`~paygate.console.audit.AuditTrail`) with the person and their
reason. Blocking work runs on the worker's threads (:meth:`Runtime.run`).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import date
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, FastAPI
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from paygate.api.deps import Runtime
from paygate.console import views
from paygate.console.audit import AuditTrail
from paygate.console.auth import (
    LANGUAGE_COOKIE,
    OIDC_COOKIE,
    PERMISSIONS,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    ConsoleSettings,
    Permission,
    clear_cookie,
    origin_ok,
    set_cookie,
)
from paygate.console.i18n import LANGUAGES, Translator
from paygate.console.negotiations import Negotiations
from paygate.console.oidc import FLOW_LIFETIME, OidcClient, OidcFlows, OidcRefusedError
from paygate.console.staff import (
    PasswordSignInClosedError,
    Session,
    SignedIn,
    SignInRefusedError,
    StaffRegistry,
    UnknownIdentityError,
    UnknownStaffError,
    same_token,
)
from paygate.errors import InvalidInputError, NotFoundError, PaygateError, UnknownAccountError
from paygate.reconcile import assign_suspense, release_suspense, resolve_finding
from paygate.refunds.route import Payee

__all__ = ["ROUTES", "mount"]

FORM_LIMIT: Final = 16 * 1024
"""The largest form body the console reads, in bytes."""

STATIC_FILES: Final = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

router = APIRouter(prefix="/console", include_in_schema=False)

ROUTES: list[tuple[str, str, Permission | None]] = []
"""Every console route: (method, path, permission); None for the sign-in and static files."""

_templates = Environment(
    loader=PackageLoader("paygate.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class _Console:
    """What the console's routes share in one worker: staff, trail, negotiations."""

    def __init__(self, runtime: Runtime, settings: ConsoleSettings) -> None:
        gateway = runtime.gateway
        self.runtime = runtime
        self.settings = settings
        self.staff = StaffRegistry(gateway.store, gateway.clock, settings.policy)
        self.audit = AuditTrail(gateway.store, gateway.clock)
        self.negotiations = Negotiations(gateway)
        self.oidc: OidcClient | None = None
        self.flows = OidcFlows(gateway.store, gateway.clock)
        if settings.oidc is not None:
            self.oidc = OidcClient(settings.oidc, gateway.clock)


def _console(request: Request) -> _Console:
    runtime: Runtime | None = request.app.state.runtime
    if runtime is None:
        raise PaygateError("the console is not running")
    held: _Console | None = getattr(request.app.state, "console", None)
    if held is None or held.runtime is not runtime:
        held = _Console(runtime, request.app.state.console_settings)
        request.app.state.console = held
    return held


def _language(request: Request) -> str:
    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    return chosen if chosen in LANGUAGES else LANGUAGES[0]


class Page:
    """One request's context: the console, the session (None before sign-in), the words."""

    def __init__(self, request: Request, console: _Console, session: Session | None) -> None:
        self.request = request
        self.console = console
        self.session = session
        self.t = Translator(_language(request), console.runtime.gateway.settings.timezone)

    @property
    def gateway(self) -> Any:
        """The worker's Gateway."""
        return self.console.runtime.gateway

    async def run(self, work: Callable[[], Any]) -> Any:
        """``work`` on a worker thread."""
        return await self.console.runtime.run(work)

    def may(self, permission: Permission) -> bool:
        """Whether the signed-in staff member holds ``permission``."""
        return self.session is not None and self.session.member.role in PERMISSIONS[permission]

    @property
    def here(self) -> str:
        """This page's path with its query (a search's words, a sign-in's ``next``), for the
        language link to come back to; not the one-time ``done`` banner."""
        kept = [(k, v) for k, v in self.request.query_params.multi_items() if k != "done"]
        return self.request.url.path + (f"?{urlencode(kept)}" if kept else "")

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """The template in this request's language."""
        html = _templates.get_template(template).render(
            t=self.t,
            page=self,
            session=self.session,
            csrf=self.session.csrf_token if self.session else "",
            lang=self.t.language,
            path=self.request.url.path,
            here=self.here,
            Permission=Permission,
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def refuse(self, key: str, status: int, detail: str | None = None) -> HTMLResponse:
        """A refusal page that names why (and changes nothing)."""
        return self.render("message.html", status, title=self.t("refused.title"),
                           message=self.t(key), detail=detail, back=None)  # fmt: skip

    def failed(self, exc: PaygateError, back: str) -> HTMLResponse:
        """The refusal of an action the core refused: its words, and the way back."""
        status = 404 if isinstance(exc, NotFoundError) else 409
        if isinstance(exc, InvalidInputError):
            status = 422
        return self.render("message.html", status, title=self.t("refused.title"),
                           message=str(exc), detail=None, back=back)  # fmt: skip

    @property
    def actor(self) -> str:
        """The signed-in staff member's user name."""
        assert self.session is not None
        return self.session.member.username

    @property
    def role(self) -> str:
        """The signed-in staff member's role."""
        assert self.session is not None
        return self.session.member.role.value


Handler = Callable[[Page, dict[str, str]], Awaitable[Response]]


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of an unsafe request (first value of each field); None when it
    is not one or is too large."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return None
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > FORM_LIMIT):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in fields.items()}


def _route(method: str, path: str, permission: Permission | None) -> Callable[[Handler], Handler]:
    """Declare a console route: signed in, holding ``permission``, CSRF-checked if unsafe."""

    def declare(handler: Handler) -> Handler:
        ROUTES.append((method, f"/console{path}", permission))

        async def endpoint(request: Request) -> Response:
            console = _console(request)
            token = request.cookies.get(SESSION_COOKIE)
            session = await console.runtime.run(lambda: console.staff.session(token))
            page = Page(request, console, session)
            if permission is not None:
                if session is None:
                    if method == "GET":
                        target = quote(request.url.path, safe="/")
                        return RedirectResponse(f"/console/sign-in?next={target}", 303)
                    return page.refuse("signin.expired", 401)
                if session.member.role not in PERMISSIONS[permission]:
                    return page.refuse("refused.role", 403)
            form: dict[str, str] = {}
            if method != "GET":
                parsed = await _form(request)
                if parsed is None:
                    return page.refuse("refused.csrf", 403)
                form = parsed
                expected = session.csrf_token if session is not None else None
                if expected is None:  # the sign-in: the pre-session cookie's token
                    expected = request.cookies.get(PRESESSION_COOKIE) or secrets.token_hex(32)
                if not same_token(form.get("csrf_token"), expected) or not origin_ok(
                    request, console.settings
                ):
                    return page.refuse("refused.csrf", 403)
            return await handler(page, form)

        router.add_api_route(path, endpoint, methods=[method], response_model=None)
        return handler

    return declare


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return "/console/search"


# -- sign-in, sign-out, language, static -------------------------------------------------------


@_route("GET", "/sign-in", None)
async def sign_in_page(page: Page, form: dict[str, str]) -> Response:
    """The sign-in form, with a fresh pre-session token."""
    if page.session is not None:
        return RedirectResponse("/console/search", 303)
    return _sign_in_form(page, None, 200)


def _sign_in_form(page: Page, message: str | None, status: int) -> Response:
    pre = secrets.token_urlsafe(32)
    target = _safe_next(page.request.query_params.get("next"))
    oidc = page.console.settings.oidc
    response = page.render("signin.html", status, pre=pre, message=message, next=target,
                           provider=None if oidc is None else oidc.provider_name)  # fmt: skip
    set_cookie(response, page.request, page.console.settings, PRESESSION_COOKIE, pre, max_age=900)
    return response


@_route("POST", "/sign-in", None)
async def sign_in(page: Page, form: dict[str, str]) -> Response:
    """Sign in: a new session (a new token, whatever cookie came in), or the one refusal."""
    username = form.get("username", "")[:64]
    password = form.get("password", "")[:1024]
    console = page.console
    roles = console.settings.password_roles
    try:
        signed = await page.run(lambda: console.staff.sign_in(username, password, roles=roles))
    except SignInRefusedError as exc:
        closed = isinstance(exc, PasswordSignInClosedError)
        # A name no staff member has is not written down: it is often the password, typed
        # into the wrong field.
        known = await page.run(lambda: _staff_name(console.staff, username))
        await page.run(
            lambda: console.audit.record(
                known or "-", None, "sign_in", "refused",
                detail="password: signs in through the provider" if closed
                else "password" if known else "password: not a staff member's name",
            )
        )  # fmt: skip
        return _sign_in_form(page, page.t("signin.use_provider" if closed else "signin.refused"),
                             401)  # fmt: skip
    response = RedirectResponse(_safe_next(form.get("next")), 303)
    return await _signed_in(page, signed, "password", response)


def _staff_name(staff: StaffRegistry, typed: str) -> str | None:
    """The user name of the staff member ``typed`` names, or None when it names none."""
    try:
        return staff.get(typed).username
    except (UnknownStaffError, InvalidInputError):
        return None


async def _signed_in(page: Page, signed: SignedIn, method: str, response: Response) -> Response:
    """The new session's cookie on ``response``; the browser's earlier session ended; the
    sign-in on the trail with its method."""
    console = page.console
    member = signed.session.member
    previous = page.request.cookies.get(SESSION_COOKIE)
    if previous:  # the browser's earlier session ends with the new one's start
        await page.run(lambda: console.staff.sign_out(previous))
    await page.run(lambda: console.audit.record(member.username, member.role.value, "sign_in",
                                                "done", detail=method))  # fmt: skip
    set_cookie(response, page.request, console.settings, SESSION_COOKIE, signed.token)
    clear_cookie(response, page.request, console.settings, PRESESSION_COOKIE)
    return response


# -- sign-in through the identity provider (OpenID Connect) ------------------------------------


@_route("GET", "/oidc/start", None)
async def oidc_start(page: Page, form: dict[str, str]) -> Response:
    """Begin a sign-in through the identity provider: a new flow bound to this browser, and
    the way to the provider's sign-in page."""
    console = page.console
    client = console.oidc
    if client is None:
        return page.refuse("refused.not_found", 404)
    target = _safe_next(page.request.query_params.get("next"))
    try:
        await page.run(client.metadata)  # the provider answers before a flow is kept
        binding, flow = await page.run(lambda: console.flows.begin(target))
        url = await page.run(lambda: client.authorization_url(flow))
    except OidcRefusedError as exc:
        refusal = exc
        await page.run(lambda: console.audit.record("-", None, "sign_in", "refused",
                                                    detail=f"oidc: {refusal}"))  # fmt: skip
        return _oidc_refusal(page, refusal)
    response = RedirectResponse(url, 303)
    set_cookie(response, page.request, console.settings, OIDC_COOKIE, binding,
               max_age=int(FLOW_LIFETIME.total_seconds()))  # fmt: skip
    return response


@_route("GET", "/oidc/callback", None)
async def oidc_callback(page: Page, form: dict[str, str]) -> Response:
    """The provider's answer: the flow taken (once), the code exchanged, the id_token
    verified, and its staff member signed in; or a refusal that signs nobody in."""
    console = page.console
    client = console.oidc
    if client is None:
        return page.refuse("refused.not_found", 404)
    query = page.request.query_params
    binding = page.request.cookies.get(OIDC_COOKIE)
    identity = "-"
    try:
        flow = await page.run(lambda: console.flows.take(binding, query.get("state")))
        error = query.get("error")
        if error is not None:
            shown = error if error.replace("_", "").isalnum() else "?"
            raise OidcRefusedError("denied", f"the provider answered {shown[:64]}")
        code = query.get("code")
        if not code or len(code) > 2048:
            raise OidcRefusedError("provider", "the callback has no code")
        identity, _claims = await page.run(lambda: client.sign_in(code, flow))
        signed = await page.run(lambda: console.staff.sign_in_identity(identity))
    except (OidcRefusedError, SignInRefusedError) as exc:
        if isinstance(exc, OidcRefusedError):
            refusal = exc
        elif isinstance(exc, UnknownIdentityError):
            refusal = OidcRefusedError("unknown_staff", str(exc))
        else:
            refusal = OidcRefusedError("disabled", str(exc))
        shown_identity = identity
        await page.run(lambda: console.audit.record(shown_identity[:64], None, "sign_in",
                                                    "refused",
                                                    detail=f"oidc: {refusal}"))  # fmt: skip
        response = _oidc_refusal(page, refusal)
        clear_cookie(response, page.request, console.settings, OIDC_COOKIE)
        return response
    # A page, not a redirect: the navigation began at the provider (another site), and the
    # session cookie (SameSite=Strict) is sent only on a navigation this console begins.
    target = _safe_next(flow.next_path)
    response = page.render("signed_in.html", 200, target=target)
    clear_cookie(response, page.request, console.settings, OIDC_COOKIE)
    return await _signed_in(page, signed, f"oidc: {client.settings.provider_name}", response)


_OIDC_STATUS: Final = {"unreachable": 502, "provider": 502}


def _oidc_refusal(page: Page, exc: OidcRefusedError) -> HTMLResponse:
    """The page of a refused sign-in through the provider: why, in words, and the way back."""
    return page.render("message.html", _OIDC_STATUS.get(exc.reason, 403),
                       title=page.t("refused.title"), message=page.t(f"oidc.{exc.reason}"),
                       detail=None, back="/console/sign-in")  # fmt: skip


@_route("POST", "/sign-out", None)
async def sign_out(page: Page, form: dict[str, str]) -> Response:
    """End the session (server side) and clear its cookie."""
    if page.session is None:
        return RedirectResponse("/console/sign-in", 303)
    token = page.request.cookies.get(SESSION_COOKIE)
    member = page.session.member
    await page.run(lambda: page.console.staff.sign_out(token))
    await page.run(
        lambda: page.console.audit.record(member.username, member.role.value, "sign_out", "done")
    )
    response = page.render("message.html", 200, title=page.t("signin.title"),
                           message=page.t("signin.ended"), detail=None,
                           back="/console/sign-in")  # fmt: skip
    clear_cookie(response, page.request, page.console.settings, SESSION_COOKIE)
    return response


@_route("GET", "/language/{code}", None)
async def language(page: Page, form: dict[str, str]) -> Response:
    """Switch the console's language (a cookie) and go back."""
    code = page.request.path_params["code"]
    chosen = code if code in LANGUAGES else LANGUAGES[0]
    response = RedirectResponse(_safe_next(page.request.query_params.get("next")), 303)
    set_cookie(response, page.request, page.console.settings, LANGUAGE_COOKIE, chosen,
               max_age=365 * 86400)  # fmt: skip
    return response


@_route("GET", "/static/{name}", None)
async def static(page: Page, form: dict[str, str]) -> Response:
    """A file shipped in the package (htmx, the style sheet); nothing else."""
    name = page.request.path_params["name"]
    if name not in STATIC_FILES:
        return page.refuse("refused.not_found", 404)
    data = resources.files("paygate.console").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC_FILES[name],
                    headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


# -- accounts ----------------------------------------------------------------------------------


@_route("GET", "", Permission.VIEW_ACCOUNTS)
async def home(page: Page, form: dict[str, str]) -> Response:
    """The console's front page is the account search."""
    return RedirectResponse("/console/search", 303)


@_route("GET", "/search", Permission.VIEW_ACCOUNTS)
async def search(page: Page, form: dict[str, str]) -> Response:
    """Search by account number, meter address or payment reference."""
    query = page.request.query_params.get("q", "")[:64]
    hits = await page.run(lambda: views.search_accounts(page.gateway, query)) if query else []
    if len(hits) == 1 and page.request.query_params.get("go") == "1":
        return RedirectResponse(f"/console/accounts/{quote(hits[0].account_no)}", 303)
    partial = page.request.headers.get("hx-request") == "true"
    return page.render("_results.html" if partial else "search.html", query=query, hits=hits)


@_route("GET", "/accounts/{account_no}", Permission.VIEW_ACCOUNTS)
async def account(page: Page, form: dict[str, str]) -> Response:
    """The account's whole story, and the actions the staff member's role allows."""
    account_no = page.request.path_params["account_no"]
    try:
        story = await page.run(lambda: views.account_story(page.gateway, account_no))
    except UnknownAccountError:
        return page.refuse("refused.not_found", 404)
    negotiations = await page.run(lambda: page.console.negotiations.of_account(account_no))
    promise_hours = page.gateway.settings.service_promise.promise.total_seconds() / 3600
    return page.render(
        "account.html",
        story=story,
        say=_customer_sentence(page.t, story, promise_hours),
        negotiations=negotiations,
        done=page.request.query_params.get("done") == "1",
    )


def _customer_sentence(t: Translator, story: views.AccountStory, promise_hours: float) -> str:
    """What the clerk can read to the customer about their supply."""
    order = story.current_reconnection
    status = story.status
    if order is not None and order.status == "completed":
        done = order.steps[-1].done_at
        return t("say.restored", done=t.when(done))
    if order is not None and order.status == "failed":
        return t("say.failed", deadline=t.when(order.due_at))
    if order is not None and order.open:
        if order.worst is not None and story.now > order.due_at:
            return t("say.late", deadline=t.when(order.due_at),
                     severity=t(f"severity.{order.worst.value}"))  # fmt: skip
        return t("say.restoring", deadline=t.when(order.due_at))
    if status.supply_state.value in ("disconnected", "disconnection_pending"):
        return t("say.disconnected_owes", arrears=t.money(status.arrears),
                 promise=f"{promise_hours:g}")  # fmt: skip
    return ""


async def _act(
    page: Page,
    action: str,
    subject: str,
    form: dict[str, str],
    work: Callable[[], Any],
    back: str,
) -> Response:
    """Run a staff action under the audit trail; back to ``back`` when done, else the refusal."""
    reason = form.get("reason", "")
    trail = page.console.audit
    try:
        await page.run(
            lambda: trail.act(page.actor, page.role, action, subject, reason, work,
                              describe=lambda result: "" if result is None else str(result))
        )  # fmt: skip
    except PaygateError as exc:
        return page.failed(exc, back)
    return RedirectResponse(f"{back}?done=1", 303)


@_route("POST", "/accounts/{account_no}/notice", Permission.SERVE_NOTICE)
async def serve_notice(page: Page, form: dict[str, str]) -> Response:
    """Serve a written notice (or the final reminder) to the account."""
    account_no = page.request.path_params["account_no"]
    kind = form.get("kind", "notice")
    back = f"/console/accounts/{quote(account_no)}"
    actor = page.actor
    # The action's name is fixed; what was asked (the kind) is in the subject, cut to size.
    return await _act(page, "serve_notice", f"{account_no}:{kind[:32]}", form,
                      lambda: page.gateway.serve_notice(account_no, kind, served_by=actor),
                      back)  # fmt: skip


@_route("POST", "/accounts/{account_no}/negotiations", Permission.NEGOTIATE)
async def negotiate(page: Page, form: dict[str, str]) -> Response:
    """Record the negotiation with a protected account (大客户停电协商)."""
    account_no = page.request.path_params["account_no"]
    back = f"/console/accounts/{quote(account_no)}"
    try:
        agreed = date.fromisoformat(form.get("agreed_on", ""))
    except ValueError:
        return page.failed(InvalidInputError("a date YYYY-MM-DD", field="agreed_on"), back)
    actor = page.actor

    def work() -> int:
        return page.console.negotiations.record(
            account_no,
            counterpart=form.get("counterpart", ""),
            agreed_on=agreed,
            terms=form.get("terms", ""),
            recorded_by=actor,
        )

    return await _act(page, "record_negotiation", account_no, form, work, back)


@_route("POST", "/negotiations/{negotiation_id}/approve", Permission.APPROVE_DISCONNECTION)
async def approve(page: Page, form: dict[str, str]) -> Response:
    """Approve a negotiated disconnection: the disconnection order is created."""
    raw = page.request.path_params["negotiation_id"]
    if not raw.isdigit():
        return page.refuse("refused.not_found", 404)
    negotiation_id = int(raw)
    try:
        found = await page.run(lambda: page.console.negotiations.get(negotiation_id))
    except NotFoundError:
        return page.refuse("refused.not_found", 404)
    actor = page.actor
    return await _act(page, "approve_disconnection", f"negotiation:{negotiation_id}", form,
                      lambda: page.console.negotiations.approve(negotiation_id,
                                                                approved_by=actor),
                      f"/console/accounts/{quote(found.account_no)}")  # fmt: skip


@_route("POST", "/orders/{order_id}/retry", Permission.RETRY_ORDER)
async def retry(page: Page, form: dict[str, str]) -> Response:
    """Put a failed order back in the queue."""
    raw = page.request.path_params["order_id"]
    if not raw.isdigit():
        return page.refuse("refused.not_found", 404)
    order_id = int(raw)
    back = _safe_next(form.get("back"))
    return await _act(page, "retry_order", f"order:{order_id}", form,
                      lambda: page.gateway.retry_order(order_id), back)  # fmt: skip


# -- finance -----------------------------------------------------------------------------------


@_route("GET", "/finance", Permission.VIEW_FINANCE)
async def finance(page: Page, form: dict[str, str]) -> Response:
    """Runs by channel and day, open findings, suspense and its ageing, voucher liability,
    payment findings."""
    view = await page.run(lambda: views.finance_view(page.gateway))
    # Each resolution form carries a fresh resolution id: a form sent twice takes effect once.
    return page.render("finance.html", view=view, done=page.request.query_params.get("done") == "1",
                       fresh=secrets.token_hex(6))  # fmt: skip


@_route("POST", "/findings/{run_id}/{seq}/resolve", Permission.WORK_FINDINGS)
async def resolve(page: Page, form: dict[str, str]) -> Response:
    """Resolve an open finding: confirm the ledger, or reverse the payment it names."""
    run_id, seq = page.request.path_params["run_id"], page.request.path_params["seq"]
    if not (run_id.isdigit() and seq.isdigit()):
        return page.refuse("refused.not_found", 404)
    action = form.get("action", "confirmed")
    actor, reason = page.actor, form.get("reason", "")
    return await _act(page, "resolve_finding", f"finding:{run_id}:{seq}:{action[:16]}", form,
                      lambda: resolve_finding(page.gateway, int(run_id), int(seq), action,
                                              actor=actor, reason=reason).id,
                      "/console/finance")  # fmt: skip


@_route("POST", "/suspense/{item_id}/assign", Permission.WORK_FINDINGS)
async def assign(page: Page, form: dict[str, str]) -> Response:
    """Assign money in suspense to an account: posted as that account's payment."""
    raw = page.request.path_params["item_id"]
    if not raw.isdigit():
        return page.refuse("refused.not_found", 404)
    account_no = form.get("account_no", "").strip()
    actor = page.actor
    return await _act(page, "assign_suspense", f"suspense:{raw}->{account_no}"[:160], form,
                      lambda: assign_suspense(page.gateway, int(raw), account_no,
                                              actor=actor).payment_id,
                      "/console/finance")  # fmt: skip


@_route("POST", "/suspense/{item_id}/release", Permission.WORK_FINDINGS)
async def release(page: Page, form: dict[str, str]) -> Response:
    """Release money from suspense (the statement no longer shows it)."""
    raw = page.request.path_params["item_id"]
    if not raw.isdigit():
        return page.refuse("refused.not_found", 404)
    actor, reason = page.actor, form.get("reason", "")
    return await _act(page, "release_suspense", f"suspense:{raw}", form,
                      lambda: release_suspense(page.gateway, int(raw), actor=actor,
                                               reason=reason),
                      "/console/finance")  # fmt: skip


@_route("POST", "/payment-findings/{finding_id}/assign", Permission.WORK_FINDINGS)
async def assign_payment_finding(page: Page, form: dict[str, str]) -> Response:
    """Assign a payment finding's money (held for a closed account) to an open account."""
    raw = page.request.path_params["finding_id"]
    if not raw.isdigit():
        return page.refuse("refused.not_found", 404)
    account_no = form.get("account_no", "").strip()
    actor, reason = page.actor, form.get("reason", "")
    resolution_id = form.get("resolution_id", "")
    return await _act(page, "assign_payment_finding",
                      f"payment_finding:{raw}->{account_no}"[:160], form,
                      lambda: page.gateway.payment_findings.assign(
                          int(raw), account_no, resolution_id=resolution_id, reason=reason,
                          actor=actor).resolution_id,
                      "/console/finance")  # fmt: skip


@_route("POST", "/payment-findings/{finding_id}/refund", Permission.WORK_FINDINGS)
async def refund_payment_finding(page: Page, form: dict[str, str]) -> Response:
    """Refund a payment finding's money to the payer through a refund route (a provider
    route of the payment's own channel; a transfer route needs the payee)."""
    raw = page.request.path_params["finding_id"]
    if not raw.isdigit():
        return page.refuse("refused.not_found", 404)
    actor, reason = page.actor, form.get("reason", "")
    route = form.get("route", "")
    resolution_id = form.get("resolution_id", "")
    given = [form.get(k, "").strip() for k in ("payee_name", "payee_account", "payee_bank")]
    payee = Payee(*given) if any(given) else None
    return await _act(page, "refund_payment_finding",
                      f"payment_finding:{raw}->{route[:32]}", form,
                      lambda: page.gateway.payment_findings.refund(
                          int(raw), resolution_id=resolution_id, route=route, reason=reason,
                          actor=actor, payee=payee).resolution_id,
                      "/console/finance")  # fmt: skip


# -- the service promise and the trail ---------------------------------------------------------


@_route("GET", "/promise", Permission.VIEW_PROMISE)
async def promise(page: Page, form: dict[str, str]) -> Response:
    """Today's and the month's reconnections against the promise; breaches; orders at risk."""
    board = await page.run(lambda: views.dashboard(page.gateway))
    partial = page.request.headers.get("hx-request") == "true"
    return page.render("_promise.html" if partial else "promise.html", board=board,
                       done=page.request.query_params.get("done") == "1")  # fmt: skip


@_route("GET", "/audit", Permission.VIEW_AUDIT)
async def audit(page: Page, form: dict[str, str]) -> Response:
    """The newest rows of the console's audit trail."""
    rows = await page.run(lambda: page.console.audit.recent(limit=200))
    return page.render("audit.html", rows=rows)


def mount(app: FastAPI, settings: ConsoleSettings | None = None) -> None:
    """Serve the console at ``/console`` in ``app`` (settings: the ``[console]`` section of the
    configuration in effect, :meth:`PaygateConfig.load <paygate.config.PaygateConfig.load>`)."""
    if settings is None:
        from paygate.config import PaygateConfig

        settings = ConsoleSettings.from_config(PaygateConfig.load())
    app.state.console_settings = settings
    app.state.console = None
    app.include_router(router)
