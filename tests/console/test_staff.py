"""Staff records: argon2 hashes, lockout, sessions (new token per sign-in, idle and absolute
expiry, sign-out, disabling), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from paygate.console.staff import (
    Role,
    SignInRefusedError,
    StaffExistsError,
    StaffPolicy,
    StaffRegistry,
    UnknownStaffError,
)
from paygate.errors import InvalidInputError
from tests.console.conftest import ConsoleWorld
from tests.console.support import FAST_HASHER, PASSWORD


def registry(world: ConsoleWorld, **policy: object) -> StaffRegistry:
    return StaffRegistry(
        world.gateway.store,
        world.clock,
        StaffPolicy(**policy),
        hasher=FAST_HASHER,  # type: ignore[arg-type]
    )


def stored_hash(world: ConsoleWorld, username: str) -> str:
    return str(
        world.gateway.store.run(
            lambda tx: tx.scalar(
                "SELECT password_hash FROM console_staff WHERE username = :u", {"u": username}
            ),
            write=False,
        )
    )


def test_a_password_is_stored_only_as_an_argon2id_hash(world: ConsoleWorld) -> None:
    digest = stored_hash(world, "li.clerk")
    assert digest.startswith("$argon2id$")
    assert PASSWORD not in digest
    listed = {m.username: m for m in world.staff.list()}
    assert listed["li.clerk"].role is Role.CLERK and listed["li.clerk"].active
    assert set(listed) == {"li.clerk", "wang.finance", "zhao.supervisor", "chen.admin"}


def test_registration_refuses_duplicates_short_passwords_and_unknown_roles(
    world: ConsoleWorld,
) -> None:
    with pytest.raises(StaffExistsError):
        world.staff.add("LI.CLERK", "clerk", PASSWORD)
    with pytest.raises(InvalidInputError) as short:
        world.staff.add("new.one", "clerk", "short")
    assert short.value.field == "password" and "short" not in str(short.value)
    with pytest.raises(InvalidInputError) as role:
        world.staff.add("new.one", "cashier", PASSWORD)
    assert role.value.field == "role"
    with pytest.raises(InvalidInputError):
        world.staff.add("bad name!", "clerk", PASSWORD)
    assert len(world.staff.list()) == 4


def test_each_sign_in_makes_a_new_session_token_and_csrf_token(world: ConsoleWorld) -> None:
    first = world.staff.sign_in("li.clerk", PASSWORD)
    second = world.staff.sign_in("li.clerk", PASSWORD)
    assert first.token != second.token
    assert first.session.csrf_token != second.session.csrf_token
    assert world.staff.session(first.token) is not None
    assert world.staff.session(second.token) is not None
    stored = world.gateway.store.run(
        lambda tx: [r[0] for r in tx.all("SELECT token_hash FROM console_sessions")],
        write=False,
    )
    assert first.token not in stored and second.token not in stored


def test_wrong_passwords_lock_the_account_for_the_lockout_only(world: ConsoleWorld) -> None:
    staff = registry(world, max_failures=3, lockout=timedelta(minutes=15))
    for _ in range(2):
        with pytest.raises(SignInRefusedError):
            staff.sign_in("li.clerk", "not the password at all")
    # A success before the limit starts the count again.
    staff.sign_in("li.clerk", PASSWORD)
    for _ in range(3):
        with pytest.raises(SignInRefusedError):
            staff.sign_in("li.clerk", "not the password at all")
    with pytest.raises(SignInRefusedError) as locked:
        staff.sign_in("li.clerk", PASSWORD)  # the right password, refused while locked
    assert str(locked.value) == "the user name or password is not right, or locked"
    assert staff.get("li.clerk").locked_until == world.clock.now() + timedelta(minutes=15)
    # Another member is not locked: the count is per staff member.
    staff.sign_in("wang.finance", PASSWORD)
    world.clock.advance(timedelta(minutes=14, seconds=59))
    with pytest.raises(SignInRefusedError):
        staff.sign_in("li.clerk", PASSWORD)
    world.clock.advance(timedelta(seconds=1))
    assert staff.sign_in("li.clerk", PASSWORD).session.member.username == "li.clerk"


def test_unknown_and_disabled_staff_get_the_same_refusal(world: ConsoleWorld) -> None:
    with pytest.raises(SignInRefusedError) as unknown:
        world.staff.sign_in("nobody", PASSWORD)
    signed = world.staff.sign_in("li.clerk", PASSWORD)
    world.staff.disable("li.clerk")
    with pytest.raises(SignInRefusedError) as disabled:
        world.staff.sign_in("li.clerk", PASSWORD)
    assert str(unknown.value) == str(disabled.value)
    assert world.staff.session(signed.token) is None  # disabling ended the session
    with pytest.raises(UnknownStaffError):
        world.staff.disable("nobody")


def test_sessions_end_when_idle_too_long_or_too_old(world: ConsoleWorld) -> None:
    staff = registry(world, idle=timedelta(minutes=30), absolute=timedelta(hours=2))
    idle = staff.sign_in("li.clerk", PASSWORD)
    world.clock.advance(timedelta(minutes=29))
    assert staff.session(idle.token) is not None  # a request restarts the idle clock
    world.clock.advance(timedelta(minutes=29))
    assert staff.session(idle.token) is not None
    world.clock.advance(timedelta(minutes=30))
    assert staff.session(idle.token) is None
    busy = staff.sign_in("li.clerk", PASSWORD)
    for _ in range(7):
        world.clock.advance(timedelta(minutes=17))
        assert staff.session(busy.token) is not None
    world.clock.advance(timedelta(minutes=1))  # 2 h after sign-in, however busy
    assert staff.session(busy.token) is None
    assert staff.session(idle.token) is None  # an ended session stays ended


def test_sign_out_ends_the_session_once(world: ConsoleWorld) -> None:
    signed = world.staff.sign_in("li.clerk", PASSWORD)
    assert world.staff.sign_out(signed.token) is True
    assert world.staff.session(signed.token) is None
    assert world.staff.sign_out(signed.token) is False
    assert world.staff.session("made-up-token") is None
    assert world.staff.session(None) is None


def test_a_weaker_hash_is_replaced_at_the_next_sign_in(world: ConsoleWorld) -> None:
    before = stored_hash(world, "li.clerk")
    default = StaffRegistry(world.gateway.store, world.clock)  # argon2-cffi's parameters
    default.sign_in("li.clerk", PASSWORD)
    after = stored_hash(world, "li.clerk")
    assert after != before and after.startswith("$argon2id$")
    assert "m=65536" in after and "m=8192" in before
    default.sign_in("li.clerk", PASSWORD)
    assert stored_hash(world, "li.clerk") == after


def test_sessions_past_their_absolute_limit_are_not_kept(world: ConsoleWorld) -> None:
    staff = registry(world, absolute=timedelta(hours=2))

    def sessions() -> int:
        return int(
            world.gateway.store.run(
                lambda tx: tx.scalar("SELECT COUNT(*) FROM console_sessions"), write=False
            )
        )

    old = staff.sign_in("li.clerk", PASSWORD)
    staff.sign_in("wang.finance", PASSWORD)
    world.clock.advance(timedelta(hours=2, days=1, seconds=1))
    assert sessions() == 2
    staff.sign_in("li.clerk", PASSWORD)  # the clerk's old session is pruned, not finance's
    assert sessions() == 2
    assert staff.session(old.token) is None
