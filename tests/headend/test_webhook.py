"""The webhook head-end against a real head-end simulator on loopback, story by story.

The simulator checks what the adapter sends on its own (it recomputes every signature), acts
at most once per idempotency key, and injects the faults a head-end has: server errors, slow
answers, downtime by the injected clock, duplicate callbacks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from paygate.clock import FixedClock
from paygate.errors import AuthenticationError, ConfigurationError, ParseError, ReplayError
from paygate.headend.base import (
    HeadEndOutcome,
    HeadEndRejected,
    HeadEndResult,
    HeadEndUnavailable,
    SupplyCommand,
)
from paygate.headend.webhook import (
    MAX_CALLBACK_BYTES,
    HeadEndCallback,
    WebhookHeadEnd,
    command_body,
    sign,
    verify_callback,
)
from tests.headend.simulator import (
    CALLBACK_SECRET,
    COMMAND_SECRET,
    CallbackReceiver,
    HeadEndSimulator,
    hmac_hex,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "headends.md"
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
NOW_TS = str(int(NOW.timestamp()))


def adapter(simulator: HeadEndSimulator, clock: FixedClock, **overrides: Any) -> WebhookHeadEnd:
    config: dict[str, Any] = {
        "url": simulator.commands_url,
        "secret": COMMAND_SECRET,
        "callback_secret": CALLBACK_SECRET,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
    }
    config.update(overrides)
    return WebhookHeadEnd.from_config(config, clock=clock)


@pytest.fixture
def offline() -> Iterator[WebhookHeadEnd]:
    """An adapter for callback checks alone: it never sends anything, so no server runs."""
    config = {
        "url": "https://head-end.invalid/commands",
        "secret": COMMAND_SECRET,
        "callback_secret": CALLBACK_SECRET,
    }
    with WebhookHeadEnd.from_config(config) as headend:
        yield headend


def attempt(command: SupplyCommand, number: int) -> SupplyCommand:
    return command.model_copy(update={"attempt": number})


def callback_body(**fields: Any) -> bytes:
    report: dict[str, Any] = {
        "order_id": 42,
        "outcome": "completed",
        "at": "2026-11-25T02:03:00Z",
        "reference": "HE-42",
    }
    report.update(fields)
    return json.dumps({k: v for k, v in report.items() if v is not ...}).encode()


def callback_headers(
    body: bytes, *, secret: bytes = CALLBACK_SECRET, timestamp: str = NOW_TS
) -> dict[str, str]:
    return {
        "X-Headend-Timestamp": timestamp,
        "X-Headend-Signature": hmac_hex(secret, timestamp, body),
    }


# ── commands ─────────────────────────────────────────────────────────────────────────────────


def test_a_command_carries_the_documented_body_signature_and_idempotency_key(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    callback_receiver: CallbackReceiver,
    command: SupplyCommand,
) -> None:
    result = webhook.send(command)

    assert result == HeadEndResult(outcome=HeadEndOutcome.DISPATCHED, reference="HE-42")
    [received] = simulator.requests
    assert received.method == "POST"
    assert received.path == "/commands"
    assert received.signature_valid
    assert received.idempotency_key == "paygate-order-42"
    assert received.headers["x-paygate-timestamp"] == NOW_TS
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {
        "order_id": 42,
        "kind": "reconnect",
        "action": "direct_close",
        "account_no": "0100234567",
        "meter_address": "201905241006",
        "issued_at": "2026-11-25T02:00:00Z",
        "deadline": "2026-11-26T02:00:00Z",
        "attempt": 1,
        "callback_url": f"{callback_receiver.url}/headend/callback",
    }
    assert simulator.actions == ["paygate-order-42"]


def test_the_same_order_sent_three_times_after_two_500s_carries_one_key_and_acts_once(
    webhook: WebhookHeadEnd, simulator: HeadEndSimulator, command: SupplyCommand
) -> None:
    simulator.fail_next(2)
    failures: list[HeadEndUnavailable] = []
    result: HeadEndResult | None = None

    for number in (1, 2, 3):
        try:
            result = webhook.send(attempt(command, number))
        except HeadEndUnavailable as exc:
            failures.append(exc)

    assert len(failures) == 2
    assert all("500" in str(exc) for exc in failures)
    assert result is not None
    assert result.outcome is HeadEndOutcome.DISPATCHED
    assert [r.idempotency_key for r in simulator.requests] == ["paygate-order-42"] * 3
    assert all(r.signature_valid for r in simulator.requests)
    assert [r.json()["attempt"] for r in simulator.requests] == [1, 2, 3]
    assert simulator.actions == ["paygate-order-42"]

    # The dispatcher never learnt the third attempt worked, and sends once more.
    again = webhook.send(attempt(command, 4))

    assert again == HeadEndResult(outcome=HeadEndOutcome.DISPATCHED, reference="HE-42")
    assert simulator.actions == ["paygate-order-42"]


def test_an_answer_lost_to_a_timeout_is_retried_under_the_same_key_and_not_acted_on_twice(
    simulator: HeadEndSimulator, clock: FixedClock, command: SupplyCommand
) -> None:
    simulator.slow(30.0)  # far beyond the client's patience; released when the test ends

    with adapter(simulator, clock, read_timeout=0.2) as headend:
        with pytest.raises(HeadEndUnavailable, match="in time") as caught:
            headend.send(command)
        assert not isinstance(caught.value, HeadEndRejected)
        simulator.slow(0)
        result = headend.send(attempt(command, 2))

    assert result.outcome is HeadEndOutcome.DISPATCHED
    assert simulator.actions == ["paygate-order-42"]
    assert {r.idempotency_key for r in simulator.requests} == {"paygate-order-42"}


@pytest.mark.parametrize("how", ["503", "refuse"])
def test_a_head_end_down_by_the_injected_clock_is_unavailable_until_it_is_back(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    clock: FixedClock,
    command: SupplyCommand,
    how: str,
) -> None:
    simulator.down(until=clock.now() + timedelta(minutes=10), how=how)  # type: ignore[arg-type]

    with pytest.raises(HeadEndUnavailable) as caught:
        webhook.send(command)
    if how == "503":
        assert "503" in str(caught.value)
        assert "Retry-After: 60" in str(caught.value)

    clock.advance(timedelta(minutes=10))

    assert webhook.send(attempt(command, 2)).outcome is HeadEndOutcome.DISPATCHED
    assert simulator.actions == ["paygate-order-42"]


def test_a_head_end_with_nothing_listening_is_unavailable(
    clock: FixedClock, command: SupplyCommand
) -> None:
    with CallbackReceiver() as gone:
        url = f"{gone.url}/commands"  # a port that is closed once the server stops

    headend = WebhookHeadEnd.from_config({"url": url, "secret": COMMAND_SECRET}, clock=clock)
    with headend, pytest.raises(HeadEndUnavailable, match="could not be reached"):
        headend.send(command)


def test_an_unknown_meter_is_rejected_for_good_naming_status_and_answer(
    webhook: WebhookHeadEnd, simulator: HeadEndSimulator, command: SupplyCommand
) -> None:
    simulator.unknown_meters.add("201905241006")

    with pytest.raises(HeadEndRejected) as caught:
        webhook.send(command)

    assert "422" in str(caught.value)
    assert "meter 201905241006 is not registered at this head-end" in str(caught.value)
    assert not isinstance(caught.value, HeadEndUnavailable)
    assert simulator.actions == []


def test_a_command_signed_with_the_wrong_secret_is_refused_by_the_head_end(
    simulator: HeadEndSimulator, clock: FixedClock, command: SupplyCommand
) -> None:
    with (
        adapter(simulator, clock, secret=b"not-the-shared-secret-at-all") as headend,
        pytest.raises(HeadEndRejected, match="401"),
    ):
        headend.send(command)

    assert [r.signature_valid for r in simulator.requests] == [False]
    assert simulator.actions == []


def test_the_same_key_for_a_different_command_is_rejected(
    webhook: WebhookHeadEnd, simulator: HeadEndSimulator, command: SupplyCommand
) -> None:
    webhook.send(command)

    with pytest.raises(HeadEndRejected, match="another command"):
        webhook.send(command.model_copy(update={"account_no": "0100999999", "attempt": 2}))

    assert simulator.actions == ["paygate-order-42"]


@pytest.mark.parametrize(
    ("status", "headers", "error", "words"),
    [
        (400, {}, HeadEndRejected, "400"),
        (403, {}, HeadEndRejected, "403"),
        (404, {}, HeadEndRejected, "404"),
        (301, {"Location": "https://elsewhere.example/"}, HeadEndRejected, "redirect"),
        (408, {}, HeadEndUnavailable, "408"),
        (429, {"Retry-After": "120"}, HeadEndUnavailable, "Retry-After: 120"),
        (500, {}, HeadEndUnavailable, "500"),
        (502, {}, HeadEndUnavailable, "502"),
        (504, {}, HeadEndUnavailable, "504"),
    ],
)
def test_each_answer_is_final_or_retried_by_its_status(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    command: SupplyCommand,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    words: str,
) -> None:
    simulator.script(status, b'{"error":"scripted"}', headers)

    with pytest.raises(error) as caught:
        webhook.send(command)

    assert words in str(caught.value)
    assert '{"error":"scripted"}' in str(caught.value)


def test_a_long_answer_is_cut_in_the_error(
    webhook: WebhookHeadEnd, simulator: HeadEndSimulator, command: SupplyCommand
) -> None:
    simulator.script(400, b"x" * 10_000)

    with pytest.raises(HeadEndRejected) as caught:
        webhook.send(command)

    assert "x" * 200 + "…" in str(caught.value)
    assert "x" * 201 not in str(caught.value)


@pytest.mark.parametrize("outcome", ["acknowledged", "completed"])
def test_a_head_end_may_answer_the_outcome_synchronously(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    clock: FixedClock,
    command: SupplyCommand,
    outcome: str,
) -> None:
    simulator.answer_outcome = outcome

    result = webhook.send(command)

    assert result == HeadEndResult(
        outcome=HeadEndOutcome(outcome), reference="HE-42", at=clock.now()
    )


def test_an_empty_2xx_answer_means_dispatched(
    webhook: WebhookHeadEnd, simulator: HeadEndSimulator, command: SupplyCommand
) -> None:
    simulator.script(202, b"")

    result = webhook.send(command)

    assert result.outcome is HeadEndOutcome.DISPATCHED
    assert result.reference is None


def test_an_unreadable_2xx_answer_is_still_dispatched_and_logged(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    command: SupplyCommand,
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator.script(200, b"<html>OK</html>")

    result = webhook.send(command)

    assert result.outcome is HeadEndOutcome.DISPATCHED
    assert "cannot read" in result.detail
    assert "<html>OK</html>" in caplog.text


def test_an_answer_about_another_order_is_not_believed(
    webhook: WebhookHeadEnd, simulator: HeadEndSimulator, command: SupplyCommand
) -> None:
    simulator.script(200, b'{"order_id":43,"outcome":"completed"}')

    with pytest.raises(HeadEndUnavailable, match="order 43"):
        webhook.send(command)


# ── polling ──────────────────────────────────────────────────────────────────────────────────


def test_polling_follows_an_order_from_unknown_to_completed(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    clock: FixedClock,
    command: SupplyCommand,
) -> None:
    assert webhook.poll(command) is None

    webhook.send(command)
    assert webhook.poll(command) == HeadEndResult(
        outcome=HeadEndOutcome.DISPATCHED, reference="HE-42"
    )

    clock.advance(timedelta(minutes=3))
    simulator.callback_copies = 0
    simulator.complete(42)

    assert webhook.poll(command) == HeadEndResult(
        outcome=HeadEndOutcome.COMPLETED, reference="HE-42", at=clock.now()
    )
    polls = [r for r in simulator.requests if r.method == "GET"]
    assert [r.path for r in polls] == ["/commands/42"] * 3
    assert all(r.signature_valid and r.body == b"" for r in polls)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, b"", HeadEndUnavailable),
        (503, b"", HeadEndUnavailable),
        (200, b"not json", HeadEndUnavailable),
        (200, b'{"order_id":7,"outcome":"completed"}', HeadEndUnavailable),
        (403, b"forbidden", HeadEndRejected),
    ],
)
def test_a_poll_that_gets_no_usable_answer_says_whether_to_retry(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    command: SupplyCommand,
    status: int,
    body: bytes,
    error: type[Exception],
) -> None:
    simulator.script(status, body)

    with pytest.raises(error):
        webhook.poll(command)


# ── callbacks ────────────────────────────────────────────────────────────────────────────────


def test_a_completion_called_back_twice_verifies_to_the_same_callback_both_times(
    webhook: WebhookHeadEnd,
    simulator: HeadEndSimulator,
    callback_receiver: CallbackReceiver,
    clock: FixedClock,
    command: SupplyCommand,
) -> None:
    webhook.send(command)
    clock.advance(timedelta(minutes=2))
    simulator.callback_copies = 2

    statuses = simulator.complete(42)

    assert statuses == [204, 204]
    first, second = callback_receiver.deliveries
    assert (first.body, first.headers) == (second.body, second.headers)
    results = [
        webhook.verify_callback(d.body, d.headers, now=clock.now())
        for d in callback_receiver.deliveries
    ]
    assert (
        results[0]
        == results[1]
        == HeadEndCallback(
            order_id=42, outcome=HeadEndOutcome.COMPLETED, at=clock.now(), reference="HE-42"
        )
    )
    assert results[0].result() == HeadEndResult(
        outcome=HeadEndOutcome.COMPLETED, reference="HE-42", at=clock.now()
    )


def test_header_names_are_matched_without_regard_to_case(offline: WebhookHeadEnd) -> None:
    body = callback_body()
    headers = {name.lower(): value for name, value in callback_headers(body).items()}

    assert offline.verify_callback(body, headers, now=NOW).order_id == 42


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "signature missing"),
        ({"X-Headend-Signature": "ab" * 32}, "timestamp missing"),
        ({"X-Headend-Signature": "ab" * 32, "X-Headend-Timestamp": "-1"}, "unix seconds"),
        ({"X-Headend-Signature": "xyz", "X-Headend-Timestamp": NOW_TS}, "64 hex digits"),
        ({"X-Headend-Signature": "ab" * 32, "X-Headend-Timestamp": NOW_TS}, "does not verify"),
    ],
)
def test_a_callback_without_a_good_signature_is_refused(
    offline: WebhookHeadEnd, headers: dict[str, str], words: str
) -> None:
    with pytest.raises(AuthenticationError, match=words) as caught:
        offline.verify_callback(callback_body(), headers, now=NOW)

    assert type(caught.value) is AuthenticationError
    assert caught.value.field is not None


def test_a_forged_or_tampered_callback_is_refused(offline: WebhookHeadEnd) -> None:
    body = callback_body()
    forged = callback_headers(body, secret=b"an-attacker-guessing-the-secret")
    tampered = callback_body(outcome="acknowledged")
    # The command secret signs paygate's requests; it must not pass for the head-end's.
    wrong_direction = callback_headers(body, secret=COMMAND_SECRET)

    for candidate, headers in ((body, forged), (tampered, callback_headers(body))):
        with pytest.raises(AuthenticationError, match="does not verify"):
            offline.verify_callback(candidate, headers, now=NOW)
    with pytest.raises(AuthenticationError, match="does not verify"):
        offline.verify_callback(body, wrong_direction, now=NOW)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=5), True),
        (timedelta(minutes=-5), True),
        (timedelta(minutes=5, seconds=1), False),
        (timedelta(minutes=-5, seconds=-1), False),
        (timedelta(days=400), False),
    ],
)
def test_a_callback_timestamp_must_be_within_five_minutes_either_way(
    offline: WebhookHeadEnd, offset: timedelta, accepted: bool
) -> None:
    body = callback_body()
    headers = callback_headers(body)

    if accepted:
        assert offline.verify_callback(body, headers, now=NOW + offset).order_id == 42
    else:
        with pytest.raises(ReplayError, match="300 s"):
            offline.verify_callback(body, headers, now=NOW + offset)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (b"", None),
        (callback_body(outcome=...), "outcome"),
        (callback_body(outcome="failed"), "outcome"),
        (callback_body(at=...), "at"),
        (callback_body(at="2026-11-25T02:03:00"), "at"),
        (callback_body(at="yesterday"), "at"),
        (callback_body(order_id="42"), "order_id"),
        (callback_body(order_id=0), "order_id"),
        (callback_body(order_id=42.0), "order_id"),
        (callback_body(reference=""), "reference"),
        (callback_body(detail=17), "detail"),
        (callback_body(meter="201905241006"), "meter"),
    ],
)
def test_a_signed_body_that_is_not_a_callback_is_refused_naming_the_field(
    offline: WebhookHeadEnd, body: bytes, field: str | None
) -> None:
    with pytest.raises(ParseError) as caught:
        offline.verify_callback(body, callback_headers(body), now=NOW)

    assert caught.value.field == field
    assert caught.value.source == "head-end callback"


def test_an_oversized_callback_is_refused_before_anything_else() -> None:
    body = b" " * (MAX_CALLBACK_BYTES + 1)

    with pytest.raises(ParseError, match="at most"):
        verify_callback(body, {}, secret=CALLBACK_SECRET, now=NOW)


def test_a_header_given_twice_with_different_values_is_refused(offline: WebhookHeadEnd) -> None:
    body = callback_body()
    headers = callback_headers(body)
    headers["x-headend-signature"] = "00" * 32

    with pytest.raises(AuthenticationError, match="twice"):
        offline.verify_callback(body, headers, now=NOW)


# ── the callback parser refuses everything with the documented errors only ──────────────────

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
near_callbacks = st.fixed_dictionaries(
    {
        "order_id": st.integers(-3, 10**12) | json_values,
        "outcome": st.sampled_from([o.value for o in HeadEndOutcome] + ["failed", ""])
        | json_values,
    },
    optional={
        "at": instants.map(lambda d: d.isoformat()) | st.text(max_size=30) | json_values,
        "reference": st.text(max_size=40) | st.none() | json_values,
        "detail": st.text(max_size=40) | json_values,
        "extra": json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_callbacks.map(lambda v: json.dumps(v).encode())
)
header_names = st.sampled_from(
    ["X-Headend-Timestamp", "X-Headend-Signature", "x-headend-signature", "Content-Type"]
) | st.text(max_size=20)


@given(bodies)
def test_any_signed_body_is_a_callback_or_a_parse_error(body: bytes) -> None:
    try:
        callback = verify_callback(body, callback_headers(body), secret=CALLBACK_SECRET, now=NOW)
    except ParseError:
        return
    assert callback.order_id > 0
    assert callback.at.tzinfo is UTC


@given(bodies, st.dictionaries(header_names, st.text(max_size=80), max_size=4))
def test_any_input_raises_nothing_but_the_documented_errors(
    body: bytes, headers: dict[str, str]
) -> None:
    # Anything else propagates and fails the test.
    with contextlib.suppress(AuthenticationError, ParseError):
        verify_callback(body, headers, secret=CALLBACK_SECRET, now=NOW)


@given(
    st.integers(1, 10**12),
    st.sampled_from(HeadEndOutcome),
    instants,
    st.none() | st.text(min_size=1, max_size=200),
    st.text(max_size=200),
)
def test_a_valid_callback_reads_back_as_sent_every_time(
    order_id: int, outcome: HeadEndOutcome, at: datetime, reference: str | None, detail: str
) -> None:
    body = json.dumps(
        {
            "order_id": order_id,
            "outcome": outcome.value,
            "at": at.isoformat(),
            "reference": reference,
            "detail": detail,
        }
    ).encode()
    headers = callback_headers(body)

    first = verify_callback(body, headers, secret=CALLBACK_SECRET, now=NOW)
    second = verify_callback(body, headers, secret=CALLBACK_SECRET, now=NOW)

    assert (
        first
        == second
        == HeadEndCallback(
            order_id=order_id, outcome=outcome, at=at, reference=reference, detail=detail
        )
    )


# ── configuration and secrets ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"url": "https://he.example/commands"}, "secret"),
        ({"url": "https://he.example/commands", "secret": "short"}, "secret"),
        ({"url": "ftp://he.example/commands", "secret": "s" * 16}, "url"),
        ({"url": "https://he.example/commands?x=1", "secret": "s" * 16}, "url"),
        ({"url": "https://ops:short@he.example/commands", "secret": "s" * 16}, "url"),
        ({"url": "https://he.example/c", "secret": "s" * 16, "proxy": "gopher://short"}, "proxy"),
        ({"url": "https://he.example/c", "secret": "s" * 16, "read_timeout": 0}, "read_timeout"),
        ({"url": "https://he.example/c", "secret": "s" * 16, "retries": 3}, "retries"),
        ({"url": "https://he.example/c", "secret": "s" * 16, "ca_file": "/nonexistent"}, "ca_file"),
    ],
)
def test_a_configuration_that_cannot_work_is_refused_by_field(
    config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        WebhookHeadEnd.from_config(config).close()

    assert caught.value.field == field
    assert "short" not in str(caught.value)


def test_a_secret_read_from_the_environment_is_taken_as_its_utf8_bytes(
    simulator: HeadEndSimulator, clock: FixedClock, command: SupplyCommand
) -> None:
    secret = SecretStr(COMMAND_SECRET.decode())

    with adapter(simulator, clock, secret=secret) as headend:
        headend.send(command)

    assert [r.signature_valid for r in simulator.requests] == [True]


def test_secrets_never_reach_repr_str_errors_or_logs(
    simulator: HeadEndSimulator,
    clock: FixedClock,
    command: SupplyCommand,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    with adapter(simulator, clock) as headend:
        headend.send(command)
        shown += [repr(headend), str(headend.config), repr(headend.config)]
        with pytest.raises(AuthenticationError) as caught:
            headend.verify_callback(b"{}", {"X-Headend-Signature": "00"}, now=clock.now())
        shown.append(str(caught.value))
    with pytest.raises(ConfigurationError) as refused:
        WebhookHeadEnd.from_config({"url": "https://he.example/c", "secret": "tiny-secret"})
    shown += [str(refused.value), caplog.text]
    proxied = {"url": "https://he.example/c", "secret": COMMAND_SECRET}
    with WebhookHeadEnd.from_config(
        {**proxied, "proxy": "http://ops:proxy-pass@10.0.0.1:3128"}
    ) as via:
        shown += [repr(via), repr(via.config)]

    text = "\n".join(shown)
    for secret in (COMMAND_SECRET, CALLBACK_SECRET, b"tiny-secret", b"proxy-pass"):
        assert secret.decode() not in text


def test_the_docs_worked_example_signs_as_written() -> None:
    page = DOCS.read_text()
    example = SupplyCommand(
        order_id=42,
        kind="reconnect",
        action="direct_close",
        account_no="0100234567",
        meter_address="201905241006",
        issued_at=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        deadline=datetime(2026, 11, 26, 2, 0, tzinfo=UTC),
        attempt=1,
    )
    body = command_body(example)
    signature = sign(b"an-example-secret-of-32-bytes-00", "1795572000", body)

    assert body.decode() in page
    assert re.search(rf"X-Paygate-Signature: {signature}\b", page)
    assert hmac_hex(b"an-example-secret-of-32-bytes-00", "1795572000", body) == signature
    poll = sign(b"an-example-secret-of-32-bytes-00", "1795572000", b"")
    assert re.search(rf"X-Paygate-Signature: {poll}\b", page)

    [callback] = re.findall(r"X-Headend-Signature: [0-9a-f]{64}\n\n(\{.*\})\n", page)
    [headers] = re.findall(r"(X-Headend-Timestamp: \d+\nX-Headend-Signature: [0-9a-f]{64})", page)
    received = verify_callback(
        callback.encode(),
        dict(line.split(": ") for line in headers.splitlines()),
        secret=b"an-example-secret-of-32-bytes-00",
        now=datetime(2026, 11, 25, 2, 3, 30, tzinfo=UTC),
    )
    assert received == HeadEndCallback(
        order_id=42,
        outcome=HeadEndOutcome.COMPLETED,
        at=datetime(2026, 11, 25, 2, 3, tzinfo=UTC),
        reference="HE-42",
    )


def test_a_proxy_in_the_environment_does_not_reroute_commands(
    simulator: HeadEndSimulator,
    clock: FixedClock,
    command: SupplyCommand,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing answers
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")

    with adapter(simulator, clock) as headend:
        assert headend.send(command).outcome is HeadEndOutcome.DISPATCHED
