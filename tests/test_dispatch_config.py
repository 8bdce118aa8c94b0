"""``[[sinks]]`` in dispatch.toml: one entry per sink, checked by the model of its kind;
secrets only from the environment, never printed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paygate.cli import app
from paygate.dispatch_config import dispatcher_options, load_dispatch_config
from paygate.errors import ConfigurationError
from paygate.outbox import WebhookSink
from paygate.sinks import JetStreamSink, RabbitMQSink
from tests.brokers import NATS_URL, delete_stream, stream_messages, unique
from tests.test_dispatch_order import three_events

ENV = {"HOOK_SECRET": "hook-sekrit", "AMQP_PASSWORD": "amqp-sekrit", "NATS_TOKEN": "nats-sekrit"}

ALL_KINDS = """
[[sinks]]
kind = "webhook"
name = "billing"
url = "https://billing.example/paygate-events"
secret_env = "HOOK_SECRET"

[[sinks]]
kind = "rabbitmq"
url = "amqp://paygate@mq.example:5672/%2F"
exchange = "paygate.events"
password_env = "AMQP_PASSWORD"

[[sinks]]
kind = "nats"
name = "bus"
url = "nats://nats.example:4222"
stream = "PAYGATE"
subject_prefix = "utility.paygate"
token_env = "NATS_TOKEN"
duplicate_window_seconds = 600

[dispatcher]
event_source = "urn:paygate:utility-a"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dispatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_kind_builds_its_sink(tmp_path: Path) -> None:
    config = load_dispatch_config(write(tmp_path, ALL_KINDS), environ=ENV)
    try:
        webhook, rabbit, bus = config.sinks
        assert isinstance(webhook, WebhookSink) and webhook.name == "billing"
        assert isinstance(rabbit, RabbitMQSink) and rabbit.exchange == "paygate.events"
        assert rabbit.name == "rabbitmq"
        assert isinstance(bus, JetStreamSink) and bus.name == "bus"
        assert (bus.stream, bus.subject_prefix) == ("PAYGATE", "utility.paygate")
        assert dispatcher_options(config.options) == {"source": "urn:paygate:utility-a"}
        for sink in config.sinks:
            assert "sekrit" not in repr(sink)
    finally:
        config.close()


def test_the_older_table_form_still_names_a_webhook(tmp_path: Path) -> None:
    text = '[sinks.billing]\ntype = "webhook"\nurl = "https://b.example/x"\nsecret_env = "S"\n'
    config = load_dispatch_config(write(tmp_path, text), environ={"S": "k"})
    [sink] = config.sinks
    assert isinstance(sink, WebhookSink) and sink.name == "billing"
    config.close()


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ('kind = "kafka"', r"sinks\[0\]\.kind: webhook, rabbitmq or nats"),
        ('kind = "rabbitmq"\nurl = "amqp://h/"', r"sinks\[0\]\.exchange"),
        (
            'kind = "rabbitmq"\nurl = "amqp://u:pw@h/"\nexchange = "x"',
            r"sinks\[0\]\.url: .*no password in the URL",
        ),
        ('kind = "rabbitmq"\nurl = "http://h/"\nexchange = "x"', r"sinks\[0\]\.url"),
        ('kind = "nats"\nstream = "A.B"', r"sinks\[0\]\.stream"),
        ('kind = "nats"\nstream = "S"\nsubject_prefix = "a.>"', r"sinks\[0\]\.subject_prefix"),
        ('kind = "nats"\nstream = "S"\npassword = "pw"', r"sinks\[0\]\.password"),
        ('kind = "webhook"\nurl = "https://h/"', r"sinks\[0\]\.secret_env"),
        ('kind = "webhook"\nurl = "ftp://h/"\nsecret_env = "S"', r"sinks\[0\]\.url"),
        (
            'kind = "rabbitmq"\nurl = "amqp://h/"\nexchange = "x"\npassword_env = "UNSET_VAR"',
            r"sinks\[0\]\.password_env: environment variable UNSET_VAR is not set",
        ),
    ],
)
def test_a_bad_entry_is_refused_naming_it(tmp_path: Path, entry: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        load_dispatch_config(write(tmp_path, f"[[sinks]]\n{entry}\n"), environ={"S": "k"})


def test_secrets_never_reach_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = ALL_KINDS.replace('exchange = "paygate.events"\n', "")
    with pytest.raises(ConfigurationError) as caught:
        load_dispatch_config(write(tmp_path, text), environ=ENV)
    assert "sekrit" not in str(caught.value) and "sekrit" not in caplog.text


def test_dispatch_delivers_to_a_configured_stream(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paygate.gateway import Gateway

    with Gateway.open(sqlite_url) as gateway:
        three_events(gateway, "A1")
    stream = unique("PAYGATE_TEST").replace("-", "_")
    config = write(
        tmp_path,
        f'[[sinks]]\nkind = "nats"\nurl = "{NATS_URL}"\nstream = "{stream}"\n'
        f'subject_prefix = "{stream}"\n[dispatcher]\nevent_source = "urn:test"\n',
    )
    try:
        result = CliRunner().invoke(
            app, ["dispatch", "--once", "--config", str(config), "--database-url", sqlite_url]
        )
        assert result.exit_code == 0 and "3 delivered" in result.output, result.output
        messages = stream_messages(NATS_URL, stream)
    finally:
        delete_stream(NATS_URL, stream)
    assert [s for _, _, s in messages] == [
        f"{stream}.dunning.notice",
        f"{stream}.dunning.final_reminder",
        f"{stream}.supply.disconnected",
    ]
    assert all(b'"source":"urn:test"' in body for _, body, _ in messages)
