"""Who may do what in the console, and how a request proves it: cookies, roles, CSRF, origin.

Invariants:

* **Every route names its permission**, and every permission names the roles that hold it
  (:data:`PERMISSIONS`): a route is refused to a signed-out visitor (a page redirects to the
  sign-in, an action answers 401) and to a role without the permission (403), before it reads
  anything of an account. The admin manages nothing through the console and moves no money:
  it reads every page and the audit trail (segregation of duties: the person who manages staff
  does not also resolve findings or approve disconnections).
* **Every unsafe request is checked twice for forgery**: its form carries the session's
  synchronizer token (compared in constant time), and its ``Origin`` (or, without one, its
  ``Referer``) is this console's own origin. Either missing or wrong is a refusal (403) that
  changes nothing. The sign-in form, before any session, carries a token bound to a
  short-lived pre-session cookie (double submit), with the same origin check.
* **Cookies**: ``HttpOnly``, ``SameSite=Strict``, path ``/console``; ``Secure`` when the
  request came over TLS (``auto``, the default), always (``true``) or never (``false``: plain
  HTTP on localhost only). The one exception is the cookie binding a sign-in through the
  identity provider to the browser that began it: ``SameSite=Lax``, path
  ``/console/oidc``, since it must come back with the provider's redirect (a cross-site
  navigation), and it signs nobody in by itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from paygate.config.sections import secret_from_env
from paygate.console.oidc import OidcSettings, require_extra
from paygate.console.staff import Role, StaffPolicy
from paygate.errors import ConfigurationError

if TYPE_CHECKING:
    from paygate.config import PaygateConfig

__all__ = [
    "LANGUAGE_COOKIE",
    "OIDC_COOKIE",
    "PERMISSIONS",
    "PRESESSION_COOKIE",
    "SESSION_COOKIE",
    "ConsoleSettings",
    "CookieSecurity",
    "Permission",
    "clear_cookie",
    "origin_ok",
    "set_cookie",
]

SESSION_COOKIE: Final = "paygate_console"
PRESESSION_COOKIE: Final = "paygate_console_pre"
LANGUAGE_COOKIE: Final = "paygate_console_lang"
OIDC_COOKIE: Final = "paygate_console_oidc"
COOKIE_PATH: Final = "/console"
OIDC_COOKIE_PATH: Final = "/console/oidc"


class Permission(StrEnum):
    """What a route lets its caller do."""

    VIEW_ACCOUNTS = "view_accounts"
    SERVE_NOTICE = "serve_notice"
    NEGOTIATE = "negotiate"
    APPROVE_DISCONNECTION = "approve_disconnection"
    RETRY_ORDER = "retry_order"
    VIEW_FINANCE = "view_finance"
    WORK_FINDINGS = "work_findings"
    VIEW_PROMISE = "view_promise"
    VIEW_AUDIT = "view_audit"


PERMISSIONS: Final[dict[Permission, frozenset[Role]]] = {
    Permission.VIEW_ACCOUNTS: frozenset(Role),
    Permission.SERVE_NOTICE: frozenset({Role.CLERK, Role.SUPERVISOR}),
    Permission.NEGOTIATE: frozenset({Role.SUPERVISOR}),
    Permission.APPROVE_DISCONNECTION: frozenset({Role.SUPERVISOR}),
    Permission.RETRY_ORDER: frozenset({Role.SUPERVISOR}),
    Permission.VIEW_FINANCE: frozenset({Role.FINANCE, Role.ADMIN}),
    Permission.WORK_FINDINGS: frozenset({Role.FINANCE}),
    Permission.VIEW_PROMISE: frozenset({Role.CLERK, Role.SUPERVISOR, Role.ADMIN}),
    Permission.VIEW_AUDIT: frozenset({Role.ADMIN, Role.SUPERVISOR}),
}
"""Which roles hold each permission."""


class CookieSecurity(StrEnum):
    """When the console's cookies are marked ``Secure``."""

    AUTO = "auto"  # when the request came over TLS
    ALWAYS = "true"
    NEVER = "false"


RETIRED_CONSOLE_ENV: Final = {
    "PAYGATE_CONSOLE_SECURE_COOKIES": "PAYGATE_CONSOLE__SECURE_COOKIES",
    "PAYGATE_CONSOLE_MAX_FAILURES": "PAYGATE_CONSOLE__MAX_FAILURES",
    "PAYGATE_CONSOLE_LOCKOUT_MINUTES": "PAYGATE_CONSOLE__LOCKOUT_MINUTES",
    "PAYGATE_CONSOLE_IDLE_MINUTES": "PAYGATE_CONSOLE__IDLE_MINUTES",
    "PAYGATE_CONSOLE_ABSOLUTE_HOURS": "PAYGATE_CONSOLE__ABSOLUTE_HOURS",
    "PAYGATE_CONSOLE_ORIGINS": "PAYGATE_CONSOLE__ORIGINS",
}
"""Variables the console no longer reads, each with the one that replaced it (the ``[console]``
section's own, ``PAYGATE_CONSOLE__<KEY>``)."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The console's settings: cookie security, sign-in policy, origins besides its own; the
    identity provider staff may sign in through (``oidc``), and the roles that may still sign
    in with a password (``password_roles``: every role, or the admin alone)."""

    secure_cookies: CookieSecurity = CookieSecurity.AUTO
    policy: StaffPolicy = field(default_factory=StaffPolicy)
    extra_origins: frozenset[str] = frozenset()
    oidc: OidcSettings | None = None
    password_roles: frozenset[Role] = frozenset(Role)

    @classmethod
    def from_config(
        cls, config: PaygateConfig, environ: Mapping[str, str] | None = None
    ) -> ConsoleSettings:
        """The settings of ``config``'s ``[console]`` section; the client secret from the
        variable ``client_secret_env`` names. Refused (naming the extra) when a provider is
        configured but the ``oidc`` extra is not installed, and (naming what to set instead)
        while a variable of :data:`RETIRED_CONSOLE_ENV` is set in ``environ`` (default
        ``os.environ``)."""
        env = os.environ if environ is None else environ
        for old, new in RETIRED_CONSOLE_ENV.items():
            if env.get(old, "").strip():
                raise ConfigurationError(
                    f"${old} is no longer read: console settings are the [console] section of "
                    f"the configuration (or ${new}); set that and unset ${old}",
                    field=old,
                )
        section = config.console
        oidc = None
        if section.oidc is not None:
            require_extra()
            given = section.oidc
            secret = None
            if given.client_secret_env is not None:
                secret = SecretStr(
                    secret_from_env(
                        config.place("console.oidc.client_secret_env"),
                        given.client_secret_env,
                        env,
                    )
                )
            oidc = OidcSettings(
                provider_name=given.provider_name,
                issuer=given.issuer,
                client_id=given.client_id,
                redirect_url=given.redirect_url,
                client_secret=secret,
                scopes=tuple(given.scopes),
                staff_claim=given.staff_claim,
                algorithms=tuple(given.algorithms),
                timeout=given.timeout_seconds,
                leeway=given.leeway_seconds,
            )
        return cls(
            secure_cookies=CookieSecurity(section.secure_cookies),
            policy=StaffPolicy(
                max_failures=section.max_failures,
                lockout=timedelta(minutes=section.lockout_minutes),
                idle=timedelta(minutes=section.idle_minutes),
                absolute=timedelta(hours=section.absolute_hours),
            ),
            extra_origins=frozenset(section.origins),
            oidc=oidc,
            password_roles=_password_roles(section.password_sign_in),
        )

    def secure(self, request: Request) -> bool:
        """Whether this request's cookies are marked ``Secure``."""
        if self.secure_cookies is CookieSecurity.AUTO:
            return request.url.scheme == "https"
        return self.secure_cookies is CookieSecurity.ALWAYS


def _password_roles(who: Literal["everyone", "admin"]) -> frozenset[Role]:
    return frozenset(Role) if who == "everyone" else frozenset({Role.ADMIN})


def set_cookie(
    response: Response,
    request: Request,
    settings: ConsoleSettings,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    """Set one of the console's cookies with its attributes."""
    oidc = name == OIDC_COOKIE
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=OIDC_COOKIE_PATH if oidc else COOKIE_PATH,
        httponly=True,
        samesite="lax" if oidc else "strict",
        secure=settings.secure(request),
    )


def clear_cookie(
    response: Response, request: Request, settings: ConsoleSettings, name: str
) -> None:
    """Remove one of the console's cookies (same attributes as when it was set)."""
    oidc = name == OIDC_COOKIE
    response.delete_cookie(
        name,
        path=OIDC_COOKIE_PATH if oidc else COOKIE_PATH,
        httponly=True,
        samesite="lax" if oidc else "strict",
        secure=settings.secure(request),
    )


def own_origin(request: Request) -> str:
    """This console's origin as the request reached it: ``scheme://host[:port]``."""
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}".lower()


def origin_ok(request: Request, settings: ConsoleSettings) -> bool:
    """Whether an unsafe request came from a page of this console (Origin, else Referer)."""
    allowed = {own_origin(request), *(o.lower() for o in settings.extra_origins)}
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower().rstrip("/") in allowed
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() in allowed
    return False
