"""paygate.logs: the formats, the request id, the [log] section and the secret mask."""

from __future__ import annotations

import io
import json
import logging
import string
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from paygate.cli import app
from paygate.config import PaygateConfig
from paygate.errors import ConfigurationError
from paygate.logs import (
    FIELDS,
    JsonFormatter,
    RequestIdFilter,
    SecretMask,
    TextFormatter,
    configure_logging,
    log_options,
    logging_config,
    mask_secrets,
    request_id,
)

Captured = tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(SecretMask())
    logger = logging.getLogger("paygate.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_a_json_line_has_time_with_offset_level_logger_message_and_fields(
    captured: Captured,
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    token = request_id.set("0123456789abcdef0123456789abcdef")
    try:
        logger.info("event %s: delivered", 7, extra={"event_id": 7, "attempt": 2, "sink": "b"})
    finally:
        request_id.reset(token)
    logger.warning("outside a request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert datetime.fromisoformat(first.pop("time")).utcoffset() is not None
    assert first == {
        "level": "info",
        "logger": "paygate.test_logs",
        "message": "event 7: delivered",
        "request_id": "0123456789abcdef0123456789abcdef",
        "sink": "b",
        "event_id": 7,
        "attempt": 2,
    }
    assert list(first) == ["level", "logger", "message", *(f for f in FIELDS if f in first)]
    assert "request_id" not in second and second["level"] == "warning"


def test_a_text_line_has_its_fields_and_its_trace_both_masked(captured: Captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())
    try:
        raise RuntimeError("could not connect to postgresql://app:hunter2hunter2@db/ledger")
    except RuntimeError:
        logger.exception("failed", extra={"error": "pin=123456", "order_id": 3, "path": "/a b"})
    text = stream.getvalue()
    head = text.splitlines()[0]
    assert " ERROR paygate.test_logs: failed " in head
    assert "error=pin=*** order_id=3" not in head  # a value with '=' is quoted
    assert 'path="/a b"' in head and 'error="pin=***"' in head and "order_id=3" in head
    assert "Traceback" in text and "RuntimeError" in text
    assert "hunter2hunter2" not in text and "app:***@db" in text


# "Zq" first: a secret is never a substring of the text around it
SECRET = st.text(string.ascii_letters + string.digits + "-_.~!$", min_size=4, max_size=40).map(
    lambda s: "Zq" + s
)


@given(secret=SECRET)
def test_every_shape_a_secret_takes_is_masked(secret: str) -> None:
    shapes = [
        f"postgresql+psycopg://paygate:{secret}@db.internal:5432/paygate",
        f"https://hooks.example/x?token={secret}&a=1",
        f"password={secret}",
        f"callback_secret='{secret}'",
        f'{{"pin": "{secret}", "serial": "100000000008"}}',
        f"{{'voucher_pin_key': '{secret}'}}",
        f"Authorization: Bearer {secret}",
        f"X-Paygate-Signature: {secret}",
    ]
    for shape in shapes:
        assert secret not in mask_secrets(f"before {shape} after"), shape


def _mixed(text: str) -> bool:
    return all(any(test(c) for c in text) for test in (str.isupper, str.islower, str.isdigit))


@given(key=st.binary(min_size=32, max_size=64))
def test_keys_and_signatures_in_hex_or_base64_are_masked(key: bytes) -> None:
    import base64

    assert key.hex() not in mask_secrets(f"key {key.hex()} given")
    for encoded in (base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()):
        # The mask takes base64 for what has both cases and digits (a path or a name has not);
        # a random key's 43 characters and more lack one of them once in several hundred.
        assume(_mixed(encoded) or all(c in string.hexdigits for c in encoded.rstrip("=")))
        assert encoded not in mask_secrets(f"signature {encoded} given")
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
    assert "MC4CAQ" not in mask_secrets(f"key {pem} loaded")


def test_what_is_not_a_secret_is_left_alone() -> None:
    plain = (
        "request 0123456789abcdef0123456789abcdef: GET /v1/accounts/3100000001 401 "
        "supply order 12: head-end hes reports dispatched; idempotency_key=cash-1 "
        'File "/srv/paygate/.venv/lib/python3.11/site-packages/paygate/outbox.py", line 3 '
        "/tmp/pytest-of-root/pytest-12/test_the_older_files_are_read_w0/dispatch.toml"
    )
    assert mask_secrets(plain) == plain


def test_the_log_section_the_flags_and_their_refusals(tmp_path: Path) -> None:
    file = tmp_path / "paygate.toml"
    file.write_text('[log]\nlevel = "debug"\nformat = "json"\n')
    config = PaygateConfig.load(file, environ={})
    assert log_options(None, None, config.log) == ("debug", "json")
    assert log_options("WARNING", "text", config.log) == ("warning", "text")
    env = PaygateConfig.load(environ={"PAYGATE_LOG__LEVEL": "error"})
    assert (env.log.level, env.log.format) == ("error", "text")
    with pytest.raises(ConfigurationError, match=r"--log-format xml: must be one of text, json"):
        log_options(None, "xml", config.log)
    file.write_text('[log]\nlevel = "loud"\n')
    with pytest.raises(ConfigurationError, match=r"paygate.toml: log.level"):
        PaygateConfig.load(file, environ={})
    with pytest.raises(ValueError, match="log level"):
        logging_config("trace", "text")  # type: ignore[arg-type]


def test_serve_and_dispatch_refuse_a_log_level_in_one_line(sqlite_url: str) -> None:
    runner = CliRunner()
    for command in (["serve"], ["dispatch", "--once"]):
        result = runner.invoke(app, [*command, "--database-url", sqlite_url, "--log-level", "loud"])
        assert result.exit_code == 2, result.output
        assert "--log-level loud: must be one of debug, info, warning, error" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_configure_logging_sends_paygate_and_uvicorn_through_one_formatter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
               logging.getLogger(name).propagate)
        for name in ("paygate", "uvicorn", "uvicorn.error", "uvicorn.access", "")
    }  # fmt: skip
    try:
        configure_logging("info", "json")
        logging.getLogger("paygate.outbox").info("delivered", extra={"event_id": 1})
        logging.getLogger("uvicorn.error").info("Started server process")
        logging.getLogger("paygate.outbox").debug("not at info")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(line["logger"], line["message"]) for line in lines] == [
            ("paygate.outbox", "delivered"),
            ("uvicorn.error", "Started server process"),
        ]
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
