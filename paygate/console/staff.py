"""Staff of the service centre: who may sign in to the console, with which role, and their sessions.

Invariants:

* **No password is kept or logged.** A password is hashed with argon2id (argon2-cffi's
  defaults) the moment it arrives and only the hash is stored; nothing in this module logs,
  formats or returns a password. A hash made with weaker parameters is replaced at the next
  sign-in.
* **A session is a random server-side token.** The cookie holds 32 random bytes; the database
  holds only their SHA-256, so a copy of the table signs nobody in. Each sign-in makes a new
  token (a token from before the sign-in is never promoted: no session fixation), with its own
  CSRF token. A session ends at sign-out, after ``idle`` without a request, after ``absolute``
  whatever the activity, and when its staff member is disabled.
* **Repeated failures lock the account.** ``max_failures`` wrong passwords in a row lock the
  staff member out for ``lockout``; while locked even the right password is refused, with the
  same answer as a wrong one. The count is per staff member (not per address, which a
  service centre's shared NAT would make meaningless) and starts again after a success or a
  lockout. An unknown user name costs the same argon2 work as a known one.
* **An identity provider vouches for a person, never for a role.** A sign-in through the
  provider (:meth:`StaffRegistry.sign_in_identity`) opens a session only for the active staff
  member linked to that identity (``paygate staff add --oidc-identity``, unique); the role is
  the one registered here. It opens the same kind of session as a password does.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from paygate.clock import Clock
from paygate.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from paygate.store.engine import Store, Tx, UniqueViolation

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "PasswordSignInClosedError",
    "Role",
    "Session",
    "SignInRefusedError",
    "SignedIn",
    "StaffExistsError",
    "StaffMember",
    "StaffPolicy",
    "StaffRegistry",
    "UnknownIdentityError",
    "UnknownStaffError",
]

MIN_PASSWORD_LENGTH: Final = 12
"""A staff password's least length, in characters."""

_USERNAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


class Role(StrEnum):
    """What a staff member does at the service centre; :mod:`paygate.console.auth` says what
    each may do."""

    CLERK = "clerk"
    FINANCE = "finance"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class SignInRefusedError(AuthenticationError):
    """A sign-in refused: wrong name or password, locked out, or disabled (one answer for all)."""

    code = "sign_in_refused"


class PasswordSignInClosedError(SignInRefusedError):
    """The right password of a staff member whose role signs in through the identity
    provider only (``[console] password_sign_in = "admin"``)."""

    code = "password_sign_in_closed"


class UnknownIdentityError(SignInRefusedError):
    """A sign-in through the identity provider for an identity no active staff member has."""

    code = "unknown_identity"


class StaffExistsError(ConflictError):
    """A staff member of that user name is already registered."""

    code = "staff_exists"


class UnknownStaffError(NotFoundError):
    """No staff member of that user name."""

    code = "unknown_staff"


@dataclass(frozen=True, slots=True)
class StaffPolicy:
    """The console's sign-in rules: lockout after ``max_failures`` for ``lockout``; sessions
    end after ``idle`` without a request and ``absolute`` after sign-in."""

    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=10)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise InvalidInputError("at least one failure before a lockout", field="max_failures")
        for name in ("lockout", "idle", "absolute"):
            if getattr(self, name) <= timedelta(0):
                raise InvalidInputError("must be positive", field=name)


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A staff member as listed (never the password hash)."""

    id: int
    username: str
    display_name: str | None
    role: Role
    active: bool
    created_at: datetime
    disabled_at: datetime | None
    last_signin_at: datetime | None
    locked_until: datetime | None
    oidc_identity: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who is signed in, and the CSRF token every form of theirs carries."""

    member: StaffMember
    csrf_token: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: the token for the cookie (shown once) and the session it opens."""

    token: str
    session: Session


_STAFF_COLUMNS = (
    "id, username, display_name, role, status, created_at, disabled_at, last_signin_at, "
    "locked_until, oidc_identity"
)


def _member(tx: Tx, row: tuple[Any, ...]) -> StaffMember:
    def ts(value: Any) -> datetime | None:
        return None if value is None else tx.read_ts(value)

    return StaffMember(
        id=int(row[0]),
        username=str(row[1]),
        display_name=None if row[2] is None else str(row[2]),
        role=Role(row[3]),
        active=row[4] == "active",
        created_at=tx.read_ts(row[5]),
        disabled_at=ts(row[6]),
        last_signin_at=ts(row[7]),
        locked_until=ts(row[8]),
        oidc_identity=None if row[9] is None else str(row[9]),
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_username(username: str) -> str:
    """``username`` as stored (lower case), or the refusal naming the field."""
    name = username.strip().lower()
    if not 1 <= len(name) <= 64 or not set(name) <= _USERNAME_CHARS:
        raise InvalidInputError("1 to 64 of a-z, 0-9, '.', '_' and '-'", field="username")
    return name


def check_identity(identity: str) -> str:
    """An identity provider's name for a staff member as stored (the value of the configured
    claim: an e-mail address, a user name or a subject), or the refusal naming the field."""
    value = identity.strip()
    if not 1 <= len(value) <= 255 or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInputError("1 to 255 printable characters", field="oidc_identity")
    return value


def check_password(password: str) -> None:
    """Refuse a password too short to keep (the message never quotes it)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(
            f"a staff password has at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )


class StaffRegistry:
    """Staff members, their passwords and their sessions, in the database of ``store``."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        policy: StaffPolicy | None = None,
        *,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.policy = policy or StaffPolicy()
        self._hasher = hasher or PasswordHasher()
        # Verified against when the user name is unknown, so that the answer takes as long.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    # -- staff ---------------------------------------------------------------------------------

    def add(
        self,
        username: str,
        role: Role | str,
        password: str,
        *,
        display_name: str | None = None,
        oidc_identity: str | None = None,
    ) -> StaffMember:
        """Register a staff member with ``role``; ``password`` is hashed, never stored.
        ``oidc_identity`` links them to the identity provider's name for them (unique)."""
        name = check_username(username)
        identity = None if oidc_identity is None else check_identity(oidc_identity)
        try:
            chosen = Role(role)
        except ValueError:
            raise InvalidInputError(
                f"one of {', '.join(r.value for r in Role)}", field="role"
            ) from None
        check_password(password)
        digest = self._hasher.hash(password)
        now = self._clock.now()

        def work(tx: Tx) -> StaffMember:
            tx.execute(
                "INSERT INTO console_staff (id, username, display_name, role, password_hash, "
                "status, failed_signins, created_at, oidc_identity) VALUES (:id, :u, :d, :r, "
                ":h, 'active', 0, :now, :i)",
                {
                    "id": tx.ids.one(),
                    "u": name,
                    "d": display_name,
                    "r": chosen.value,
                    "h": digest,
                    "now": tx.ts(now),
                    "i": identity,
                },
            )
            return self._read(tx, name)

        try:
            return self._store.run(work)
        except UniqueViolation:
            if identity is not None and self._identity_taken(identity):
                raise StaffExistsError(
                    "another staff member is linked to that identity", field="oidc_identity"
                ) from None
            raise StaffExistsError(f"staff member {name} exists", field="username") from None

    def link(self, username: str, oidc_identity: str | None) -> StaffMember:
        """Link a staff member to the identity provider's name for them (None: unlink)."""
        name = check_username(username)
        identity = None if oidc_identity is None else check_identity(oidc_identity)

        def work(tx: Tx) -> StaffMember:
            member = self._read(tx, name)
            tx.execute(
                "UPDATE console_staff SET oidc_identity = :i WHERE id = :id",
                {"i": identity, "id": member.id},
            )
            return self._read(tx, name)

        try:
            return self._store.run(work)
        except UniqueViolation:
            raise StaffExistsError(
                "another staff member is linked to that identity", field="oidc_identity"
            ) from None

    def _identity_taken(self, identity: str) -> bool:
        return (
            self._store.run(
                lambda tx: tx.one(
                    "SELECT 1 FROM console_staff WHERE oidc_identity = :i", {"i": identity}
                ),
                write=False,
            )
            is not None
        )

    def disable(self, username: str) -> StaffMember:
        """Disable a staff member: every session of theirs ends, and no sign-in succeeds."""
        name = check_username(username)
        now = self._clock.now()

        def work(tx: Tx) -> StaffMember:
            member = self._read(tx, name)
            if member.active:
                tx.execute(
                    "UPDATE console_staff SET status = 'disabled', disabled_at = :now "
                    "WHERE id = :id",
                    {"now": tx.ts(now), "id": member.id},
                )
                tx.execute(
                    "UPDATE console_sessions SET ended_at = :now, ended_why = 'disabled' "
                    "WHERE staff_id = :id AND ended_at IS NULL",
                    {"now": tx.ts(now), "id": member.id},
                )
            return self._read(tx, name)

        return self._store.run(work)

    def list(self, *, limit: int | None = None, after: int = 0) -> list[StaffMember]:
        """Staff members in the order they were registered; a page of ``limit`` after id
        ``after``."""

        def work(tx: Tx) -> list[StaffMember]:
            rows = tx.all(
                f"SELECT {_STAFF_COLUMNS} FROM console_staff WHERE id > :after "  # noqa: S608
                "ORDER BY id" + (" LIMIT :n" if limit is not None else ""),
                {"after": after, "n": limit},
            )
            return [_member(tx, row) for row in rows]

        return self._store.run(work, write=False)

    def get(self, username: str) -> StaffMember:
        """The staff member of ``username``."""
        name = check_username(username)
        return self._store.run(lambda tx: self._read(tx, name), write=False)

    def _read(self, tx: Tx, name: str) -> StaffMember:
        row = tx.one(
            f"SELECT {_STAFF_COLUMNS} FROM console_staff WHERE username = :u",  # noqa: S608
            {"u": name},
        )
        if row is None:
            raise UnknownStaffError(f"no staff member {name}", field="username")
        return _member(tx, row)

    # -- sign-in -------------------------------------------------------------------------------

    def sign_in(
        self, username: str, password: str, *, roles: frozenset[Role] | None = None
    ) -> SignedIn:
        """A new session for ``username`` if ``password`` is theirs and they may sign in.

        Every refusal is the same :class:`SignInRefusedError`; the failure counts toward the
        lockout of a known, active staff member. With ``roles``, a staff member of another role
        is refused even with the right password (:class:`PasswordSignInClosedError`: they sign
        in through the identity provider).
        """
        refused = SignInRefusedError("the user name or password is not right, or locked")
        try:
            name = check_username(username)
        except InvalidInputError:
            self._waste(password)
            raise refused from None
        now = self._clock.now()
        row = self._store.run(
            lambda tx: tx.one(
                f"SELECT {_STAFF_COLUMNS}, password_hash FROM console_staff "  # noqa: S608
                "WHERE username = :u",
                {"u": name},
            ),
            write=False,
        )
        if row is None:
            self._waste(password)
            raise refused
        staff_id, status, locked_until, digest = int(row[0]), row[4], row[8], str(row[10])
        locked = locked_until is not None and Tx.read_ts(locked_until) > now
        if status != "active" or locked:
            self._waste(password)
            raise refused
        try:
            self._hasher.verify(digest, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            self._store.run(lambda tx: self._count_failure(tx, staff_id, now))
            raise refused from None
        if roles is not None and Role(row[3]) not in roles:
            raise PasswordSignInClosedError("this staff member signs in through the provider")
        rehash = self._hasher.hash(password) if self._hasher.check_needs_rehash(digest) else None
        return self._open_session(staff_id, name, now, rehash=rehash, clear_failures=True)

    def sign_in_identity(self, identity: str) -> SignedIn:
        """A new session for the active staff member linked to ``identity``, the identity
        provider having vouched for it (the caller checked the provider's id_token).

        A password lockout does not stop it (the lockout guards the password, which this
        sign-in does not use) and is left as it is. Refused with
        :class:`UnknownIdentityError` for an identity no staff member is linked to and
        :class:`SignInRefusedError` for a disabled one.
        """
        value = check_identity(identity)
        now = self._clock.now()
        row = self._store.run(
            lambda tx: tx.one(
                "SELECT id, username, status FROM console_staff WHERE oidc_identity = :i",
                {"i": value},
            ),
            write=False,
        )
        if row is None:
            raise UnknownIdentityError("no staff member is linked to this identity")
        if row[2] != "active":
            raise SignInRefusedError(f"staff member {row[1]} is disabled")
        return self._open_session(int(row[0]), str(row[1]), now, rehash=None, clear_failures=False)

    def _open_session(
        self, staff_id: int, name: str, now: datetime, *, rehash: str | None, clear_failures: bool
    ) -> SignedIn:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)

        def work(tx: Tx) -> Session:
            reset = "failed_signins = 0, locked_until = NULL, " if clear_failures else ""
            opened = tx.execute(
                f"UPDATE console_staff SET {reset}last_signin_at = :now, "  # noqa: S608
                "password_hash = COALESCE(:h, password_hash) WHERE id = :id AND status = 'active'",
                {"now": tx.ts(now), "id": staff_id, "h": rehash},
            )
            if not opened.rowcount:  # disabled since it was read
                raise SignInRefusedError("the staff member is disabled")
            # Sessions past their absolute limit can never be used again: none is kept longer.
            tx.execute(
                "DELETE FROM console_sessions WHERE staff_id = :s AND created_at < :old",
                {"s": staff_id, "old": tx.ts(now - self.policy.absolute - timedelta(days=1))},
            )
            tx.execute(
                "INSERT INTO console_sessions (token_hash, staff_id, csrf_token, created_at, "
                "last_seen_at) VALUES (:t, :s, :c, :now, :now)",
                {"t": _token_hash(token), "s": staff_id, "c": csrf, "now": tx.ts(now)},
            )
            return Session(self._read(tx, name), csrf, now)

        return SignedIn(token, self._store.run(work))

    def _waste(self, password: str) -> None:
        """The argon2 work of a real check, so that the answer's timing says nothing."""
        with contextlib.suppress(VerificationError):
            self._hasher.verify(self._decoy, password)

    def _count_failure(self, tx: Tx, staff_id: int, now: datetime) -> None:
        # The increment takes the row's lock: concurrent failures each count.
        tx.execute(
            "UPDATE console_staff SET failed_signins = failed_signins + 1 WHERE id = :id",
            {"id": staff_id},
        )
        failures = int(
            tx.scalar("SELECT failed_signins FROM console_staff WHERE id = :id", {"id": staff_id})
        )
        if failures >= self.policy.max_failures:
            tx.execute(
                "UPDATE console_staff SET failed_signins = 0, locked_until = :until WHERE id = :id",
                {"until": tx.ts(now + self.policy.lockout), "id": staff_id},
            )

    # -- sessions ------------------------------------------------------------------------------

    def session(self, token: str | None) -> Session | None:
        """The live session of the cookie's ``token``, its idle clock restarted; None when
        there is none, it expired, or its staff member was disabled."""
        if not token or len(token) > 128:
            return None
        now = self._clock.now()
        key = _token_hash(token)

        def work(tx: Tx) -> Session | None:
            row = tx.one(
                "SELECT s.staff_id, s.csrf_token, s.created_at, s.last_seen_at, s.ended_at, "
                "st.username, st.status FROM console_sessions s "
                "JOIN console_staff st ON st.id = s.staff_id WHERE s.token_hash = :t",
                {"t": key},
            )
            if row is None or row[4] is not None:
                return None
            created, seen = tx.read_ts(row[2]), tx.read_ts(row[3])
            why = None
            if row[6] != "active":
                why = "disabled"
            elif now - created >= self.policy.absolute:
                why = "absolute"
            elif now - seen >= self.policy.idle:
                why = "idle"
            if why is not None:
                tx.execute(
                    "UPDATE console_sessions SET ended_at = :now, ended_why = :why "
                    "WHERE token_hash = :t",
                    {"now": tx.ts(now), "why": why, "t": key},
                )
                return None
            tx.execute(
                "UPDATE console_sessions SET last_seen_at = :now WHERE token_hash = :t",
                {"now": tx.ts(now), "t": key},
            )
            return Session(self._read(tx, str(row[5])), str(row[1]), created)

        return self._store.run(work)

    def sign_out(self, token: str | None) -> bool:
        """End the session of ``token``; whether one was live."""
        if not token or len(token) > 128:
            return False
        now = self._clock.now()

        def work(tx: Tx) -> bool:
            result = tx.execute(
                "UPDATE console_sessions SET ended_at = :now, ended_why = 'signed_out' "
                "WHERE token_hash = :t AND ended_at IS NULL",
                {"now": tx.ts(now), "t": _token_hash(token)},
            )
            return bool(result.rowcount)

        return self._store.run(work)


def same_token(given: str | None, expected: str) -> bool:
    """Whether a form's CSRF token is the session's (a constant-time comparison)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
