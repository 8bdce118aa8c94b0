"""``paygate staff``: the password from a prompt or stdin only, never echoed or stored plain."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from paygate.cli import app
from paygate.cli._common import actor_name
from paygate.console.staff import StaffRegistry
from paygate.gateway import Gateway
from tests.api.support import settings_for

runner = CliRunner()
SECRET = "a long staff password 42"


AUDITED = {("staff", "add"), ("staff", "disable"), ("staff", "link")}


def run(
    url: str, *args: str, stdin: str | None = None, reason: str | None = "on the rota"
) -> tuple[int, str, str]:
    """``paygate *args``; a command the trail records gets ``--reason`` (unless None)."""
    given = [*args, "--reason", reason] if args[:2] in AUDITED and reason is not None else args
    result = runner.invoke(app, [*given, "--database-url", url], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def trail(url: str) -> list[tuple[object, ...]]:
    with Gateway.open(settings=settings_for(url)) as gateway:
        return gateway.store.run(
            lambda tx: tx.all(
                "SELECT username, role, action, subject, outcome, reason FROM console_audit "
                "ORDER BY at, id"
            ),
            write=False,
        )


def test_staff_are_added_listed_and_disabled(db_url: str) -> None:
    code, out, err = run(
        db_url, "staff", "add", "li.na", "--role", "clerk", "--name", "李娜",
        "--password-stdin", stdin=SECRET + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "added li.na (clerk)" in out and SECRET not in out + err
    # The prompt: typed twice, not echoed.
    code, out, err = run(
        db_url, "staff", "add", "wang.fang", "--role", "finance", stdin=f"{SECRET}\n{SECRET}\n"
    )
    assert code == 0, err
    assert SECRET not in out + err
    code, out, _ = run(db_url, "staff", "list", "--json")
    items = json.loads(out)["items"]
    assert [(i["username"], i["role"], i["status"]) for i in items] == [
        ("li.na", "clerk", "active"),
        ("wang.fang", "finance", "active"),
    ]
    assert SECRET not in out and "argon2" not in out
    code, out, _ = run(db_url, "staff", "disable", "li.na")
    assert code == 0 and "disabled li.na" in out
    code, out, _ = run(db_url, "staff", "list", "--format", "csv")
    assert out.splitlines()[1].startswith("li.na,李娜,clerk,disabled,")
    with Gateway.open(settings=settings_for(db_url)) as gateway:
        staff = StaffRegistry(gateway.store, gateway.clock)
        assert staff.sign_in("wang.fang", SECRET).session.member.username == "wang.fang"


def test_refusals_are_one_line_and_change_nothing(db_url: str) -> None:
    code, _, err = run(
        db_url, "staff", "add", "li.na", "--role", "clerk", "--password-stdin", stdin="short\n"
    )
    assert code == 2 and "at least 12 characters" in err and "short" not in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(db_url, "staff", "add", "li.na", "--role", "clerk", "--password", SECRET)
    assert code == 2 and "--password" in err  # no such flag: a password is never an argument
    code, _, err = run(db_url, "staff", "add", "li.na", "--role", "cashier", "--password-stdin",
                       stdin=SECRET + "\n")  # fmt: skip
    assert code == 2
    code, _, err = run(db_url, "staff", "add", "li.na", "--role", "clerk", "--password-stdin",
                       stdin="\n")  # fmt: skip
    assert code == 2 and "no password" in err
    code, _, err = run(db_url, "staff", "disable", "nobody")
    assert code == 2 and "no staff member nobody" in err
    code, out, _ = run(db_url, "staff", "list", "--json")
    assert json.loads(out)["items"] == []
    run(db_url, "staff", "add", "li.na", "--role", "clerk", "--password-stdin", stdin=SECRET + "\n")
    code, _, err = run(
        db_url, "staff", "add", "li.na", "--role", "admin", "--password-stdin", stdin=SECRET + "\n"
    )
    assert code == 2 and "exists" in err


def test_staff_are_linked_to_the_identity_provider(db_url: str) -> None:
    """``--oidc-identity`` at ``add``, ``link`` and ``--unlink`` later; one staff member per
    identity; the link is listed; the registry signs in by it."""
    code, out, err = run(
        db_url, "staff", "add", "li.na", "--role", "clerk", "--oidc-identity",
        "li.na@grid.example", "--password-stdin", stdin=SECRET + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "signs in through the provider as li.na@grid.example" in out
    run(db_url, "staff", "add", "wang.fang", "--role", "finance", "--password-stdin",
        stdin=SECRET + "\n")  # fmt: skip
    # The same identity for a second staff member: refused, naming the field, nothing added.
    code, _, err = run(
        db_url, "staff", "add", "zhao.lei", "--role", "clerk", "--oidc-identity",
        "li.na@grid.example", "--password-stdin", stdin=SECRET + "\n",
    )  # fmt: skip
    assert code == 2 and "--oidc-identity" in err and "another staff member" in err
    code, _, err = run(db_url, "staff", "link", "wang.fang", "li.na@grid.example")
    assert code == 2 and "another staff member" in err
    code, out, err = run(db_url, "staff", "link", "wang.fang", "wang.fang@grid.example")
    assert code == 0 and "linked wang.fang to wang.fang@grid.example" in out, err
    code, out, _ = run(db_url, "staff", "list", "--json")
    items = json.loads(out)["items"]
    assert [(i["username"], i["oidc_identity"]) for i in items] == [
        ("li.na", "li.na@grid.example"),
        ("wang.fang", "wang.fang@grid.example"),
    ]
    with Gateway.open(settings=settings_for(db_url)) as gateway:
        staff = StaffRegistry(gateway.store, gateway.clock)
        signed = staff.sign_in_identity("wang.fang@grid.example")
        assert signed.session.member.username == "wang.fang"
    code, out, _ = run(db_url, "staff", "link", "wang.fang", "--unlink")
    assert code == 0 and "unlinked wang.fang" in out
    code, _, err = run(db_url, "staff", "link", "wang.fang")
    assert code == 2 and "--unlink" in err
    code, _, err = run(db_url, "staff", "link", "wang.fang", "x\u0007y")
    assert code == 2 and "oidc_identity" in err and "printable" in err
    code, _, err = run(db_url, "staff", "link", "nobody", "n@grid.example")
    assert code == 2 and "no staff member nobody" in err
    code, out, _ = run(db_url, "staff", "list", "--json")
    assert [i["oidc_identity"] for i in json.loads(out)["items"]] == ["li.na@grid.example", None]


def test_adding_linking_and_disabling_staff_is_on_the_audit_trail(db_url: str) -> None:
    """Each change to the staff is recorded with the person (``--actor``, else the operating
    system's user) and the reason, requested then done or refused; without a reason nothing
    is asked for a password, done or recorded."""
    code, _, err = run(
        db_url, "staff", "add", "li.na", "--role", "clerk", "--password-stdin",
        stdin=SECRET + "\n", reason=None,
    )  # fmt: skip
    assert code == 2 and "--reason" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(db_url, "staff", "disable", "li.na", reason="  ")
    assert code == 2 and "--reason" in err
    assert trail(db_url) == []
    code, out, _ = run(db_url, "staff", "list", "--json")
    assert json.loads(out)["items"] == []
    run(
        db_url, "staff", "add", "li.na", "--role", "supervisor", "--password-stdin",
        "--actor", "chen.admin", stdin=SECRET + "\n", reason="班长轮岗",
    )  # fmt: skip
    run(db_url, "staff", "link", "li.na", "li.na@grid.example", "--actor", "chen.admin")
    run(db_url, "staff", "disable", "nobody", "--actor", "chen.admin", reason="typo")
    run(db_url, "staff", "disable", "li.na", reason="调离营业厅")
    operator = actor_name(None)
    assert trail(db_url) == [
        ("chen.admin", None, "staff_add", "staff:li.na:supervisor", "requested", "班长轮岗"),
        ("chen.admin", None, "staff_add", "staff:li.na:supervisor", "done", "班长轮岗"),
        ("chen.admin", None, "staff_link", "staff:li.na->li.na@grid.example", "requested",
         "on the rota"),
        ("chen.admin", None, "staff_link", "staff:li.na->li.na@grid.example", "done",
         "on the rota"),
        ("chen.admin", None, "staff_disable", "staff:nobody", "requested", "typo"),
        ("chen.admin", None, "staff_disable", "staff:nobody", "refused", "typo"),
        (operator, None, "staff_disable", "staff:li.na", "requested", "调离营业厅"),
        (operator, None, "staff_disable", "staff:li.na", "done", "调离营业厅"),
    ]  # fmt: skip
    assert SECRET not in str(trail(db_url))
