"""The device registry, key handling, and request signing: every refusal by name."""

from __future__ import annotations

import base64
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretBytes
from typer import Typer
from typer.testing import CliRunner

from paygate.channels.base import InMemoryNonceStore
from paygate.channels.errors import (
    DeviceNotFoundError,
    DeviceRevokedError,
    DuplicateDeviceError,
    MalformedRequestError,
    NonceReusedError,
    SignatureError,
    StaleTimestampError,
    UnknownDeviceError,
    UnknownKeyError,
)
from paygate.channels.stores import SqlNonceStore
from paygate.cli.devices import devices_app
from paygate.clock import FixedClock
from paygate.devices import (
    KEY_ENCRYPTION_KEY_ENV,
    DeviceRegistry,
    DeviceStatus,
    KeyKind,
    canonical_request,
    canonical_target,
    key_encryption_key_from_env,
    load_public_key,
    read_signed_headers,
    sign_request,
    verify_request,
)
from paygate.errors import AuthenticationError, ConfigurationError, InvalidInputError
from paygate.gateway import Gateway
from tests.channels import kiosk_support
from tests.channels.kiosk_support import NOW, StaticDevices, device, ed25519_key, signed_headers

KEK = bytes(range(32))
KEK_B64 = base64.b64encode(KEK).decode()
MAC_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
BODY = kiosk_support.pay_body()


def registry(gateway: Gateway, kek: bytes | None = KEK) -> DeviceRegistry:
    return DeviceRegistry(gateway.store, gateway.clock, kek)


# ── keys ──────────────────────────────────────────────────────────────────────────────────


def test_public_keys_load_from_pem_and_from_base64_of_the_raw_bytes() -> None:
    key = ed25519_key("loader")
    raw = kiosk_support.public_raw(key)
    expected = key.public_key()
    for form in (
        kiosk_support.public_pem(key),
        kiosk_support.public_pem(key).encode(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "  " + base64.b64encode(raw).decode() + "\n",
    ):
        assert load_public_key(form) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a key",
        base64.b64encode(b"x" * 31).decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    ],
)
def test_anything_but_an_ed25519_public_key_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_public_key(text)
    assert caught.value.field == "public_key"


def test_the_key_encryption_key_comes_from_the_environment() -> None:
    assert key_encryption_key_from_env({}) is None
    assert key_encryption_key_from_env({KEY_ENCRYPTION_KEY_ENV: " "}) is None
    found = key_encryption_key_from_env({KEY_ENCRYPTION_KEY_ENV: KEK_B64})
    assert isinstance(found, SecretBytes)
    assert found.get_secret_value() == KEK
    assert KEK_B64 not in repr(found) + str(found)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_an_unusable_key_encryption_key_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        key_encryption_key_from_env({KEY_ENCRYPTION_KEY_ENV: value})
    assert value not in str(caught.value)


def test_a_key_encryption_key_of_the_wrong_size_is_refused(gateway: Gateway) -> None:
    with pytest.raises(ConfigurationError):
        DeviceRegistry(gateway.store, gateway.clock, b"short")
    with pytest.raises(ConfigurationError):
        DeviceRegistry(gateway.store, gateway.clock, SecretBytes(bytes(31)))


# ── the registry ──────────────────────────────────────────────────────────────────────────


class TestRegistry:
    def test_add_get_and_list(self, gateway: Gateway) -> None:
        devices = registry(gateway)
        key = ed25519_key("K0001")
        added = devices.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(key))
        raw = devices.add(
            "K0002",
            "kiosk",
            public_key_raw=kiosk_support.public_raw(ed25519_key("K0002")),
            label="Lobby, 2 Jiefang Rd",
        )
        assert added.key_kind is KeyKind.ED25519 and added.active
        assert added.created_at == gateway.clock.now()
        assert raw.label == "Lobby, 2 Jiefang Rd"
        assert devices.get("K0001") == added
        assert devices.get("nope") is None
        assert devices.get("not a device id") is None
        assert [d.device_id for d in devices.list()] == ["K0001", "K0002"]
        assert devices.public_key("K0001") == key.public_key()
        assert added.fingerprint is not None and added.fingerprint.startswith("SHA256:")

    def test_a_device_id_is_never_registered_twice(self, gateway: Gateway) -> None:
        devices = registry(gateway)
        devices.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(ed25519_key("a")))
        devices.revoke("K0001")
        with pytest.raises(DuplicateDeviceError) as caught:
            devices.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(ed25519_key("b")))
        assert caught.value.field == "device_id"

    def test_a_public_key_belongs_to_one_device(self, gateway: Gateway) -> None:
        devices = registry(gateway)
        key = ed25519_key("shared")
        devices.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(key))
        with pytest.raises(DuplicateDeviceError, match="K0001"):
            devices.add("K0002", "kiosk", public_key_raw=kiosk_support.public_raw(key))
        assert devices.get("K0002") is None

    @pytest.mark.parametrize(
        ("arguments", "field"),
        [
            ({"device_id": "K 1", "public_key_pem": "x"}, "device_id"),
            ({"device_id": "K:1", "public_key_pem": "x"}, "device_id"),
            ({"device_id": "K" * 33, "public_key_pem": "x"}, "device_id"),
            ({"channel": "Kiosk"}, "channel"),
            ({"label": "x" * 201}, "label"),
            ({"label": "two\nlines"}, "label"),
            ({"mac_key": MAC_KEY}, "key"),
            ({"public_key_pem": None}, "key"),
            ({"public_key_pem": None, "public_key_raw": b"x" * 31}, "public_key"),
            ({"public_key_pem": None, "mac_key": b"x" * 8}, "mac_key"),
        ],
    )
    def test_refused_registrations_name_the_field(
        self, gateway: Gateway, arguments: dict[str, Any], field: str
    ) -> None:
        values: dict[str, Any] = {
            "device_id": "K0001",
            "channel": "kiosk",
            "public_key_pem": kiosk_support.public_pem(ed25519_key("K0001")),
        }
        values.update(arguments)
        with pytest.raises(InvalidInputError) as caught:
            registry(gateway).add(values.pop("device_id"), values.pop("channel"), **values)
        assert caught.value.field == field
        assert registry(gateway).list() == []

    def test_revoke_is_immediate_and_idempotent(self, gateway: Gateway, clock: FixedClock) -> None:
        devices = registry(gateway)
        devices.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(ed25519_key("r")))
        first = devices.revoke("K0001")
        assert first.status is DeviceStatus.REVOKED and first.revoked_at == clock.now()
        clock.advance(timedelta(hours=1))
        assert devices.revoke("K0001").revoked_at == first.revoked_at
        assert devices.public_key("K0001") is None
        with pytest.raises(DeviceNotFoundError):
            devices.revoke("K9999")

    def test_a_mac_key_is_stored_only_encrypted(self, gateway: Gateway) -> None:
        devices = registry(gateway)
        added = devices.add("P0001", "pos", mac_key=SecretBytes(MAC_KEY), label="Counter 3")
        assert added.key_kind is KeyKind.MAC and added.public_key_pem is None
        assert added.fingerprint is None
        assert devices.mac_key("P0001") == MAC_KEY
        stored = gateway.store.run(
            lambda tx: tx.one("SELECT public_key, key_ciphertext FROM devices"), write=False
        )
        assert stored is not None and stored[0] is None
        assert (
            MAC_KEY.hex() not in stored[1] and base64.b64encode(MAC_KEY).decode() not in stored[1]
        )
        assert MAC_KEY not in base64.b64decode(stored[1].split(":", 1)[1])
        shown = repr(added) + str(added) + repr(devices) + added.model_dump_json()
        assert MAC_KEY.hex() not in shown and KEK_B64 not in shown
        assert devices.public_key("P0001") is None

    def test_no_mac_key_is_stored_without_a_key_encryption_key(self, gateway: Gateway) -> None:
        with pytest.raises(ConfigurationError, match=KEY_ENCRYPTION_KEY_ENV):
            registry(gateway, kek=None).add("P0001", "pos", mac_key=MAC_KEY)
        assert registry(gateway).list() == []

    def test_mac_keys_need_the_same_key_encryption_key_to_be_read(self, gateway: Gateway) -> None:
        registry(gateway).add("P0001", "pos", mac_key=MAC_KEY)
        with pytest.raises(ConfigurationError, match="does not decrypt"):
            registry(gateway, kek=bytes(32)).mac_key("P0001")
        with pytest.raises(ConfigurationError, match=KEY_ENCRYPTION_KEY_ENV):
            registry(gateway, kek=None).mac_key("P0001")

    def test_a_sealed_mac_key_does_not_open_on_another_device(self, gateway: Gateway) -> None:
        devices = registry(gateway)
        devices.add("P0001", "pos", mac_key=MAC_KEY)
        devices.add("P0002", "pos", mac_key=bytes(16))
        gateway.store.run(
            lambda tx: tx.execute(
                "UPDATE devices SET key_ciphertext = (SELECT key_ciphertext FROM devices "
                "WHERE device_id = 'P0001') WHERE device_id = 'P0002'"
            )
        )
        with pytest.raises(ConfigurationError, match="P0002"):
            devices.mac_key("P0002")

    def test_mac_key_is_none_for_unknown_revoked_and_signing_devices(
        self, gateway: Gateway
    ) -> None:
        devices = registry(gateway)
        devices.add("P0001", "pos", mac_key=MAC_KEY)
        devices.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(ed25519_key("m")))
        assert devices.mac_key("K0001") is None
        assert devices.mac_key("P9999") is None
        assert devices.mac_key("bad id!") is None
        devices.revoke("P0001")
        assert devices.mac_key("P0001") is None


# ── the canonical request ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("target", "canonical"),
    [
        ("/v1/kiosk/pay", "/v1/kiosk/pay"),
        ("/v1/accounts/0101234567?as_of=2026-11-25", "/v1/accounts/0101234567?as_of=2026-11-25"),
        ("/v1/a?b=2&a=1", "/v1/a?a=1&b=2"),
        ("/v1/a?a=2&a=1", "/v1/a?a=1&a=2"),
        ("/v1/a?", "/v1/a"),
        ("/v1/a?flag&&x=1", "/v1/a?flag=&x=1"),
        ("/v1/%7euser/%2f", "/v1/~user/%2F"),
        ("/v1/a%2db", "/v1/a-b"),
        ("/v1/a b", "/v1/a%20b"),
        ("/v1/户号", "/v1/%E6%88%B7%E5%8F%B7"),
        ("/v1/a?q=x%3dy", "/v1/a?q=x%3Dy"),
        ("/v1/a?q=x=y", "/v1/a?q=x%3Dy"),
    ],
)
def test_request_targets_are_normalised(target: str, canonical: str) -> None:
    assert canonical_target(target) == canonical


@pytest.mark.parametrize(
    "target", ["", "v1/kiosk", "/v1/%zz", "/v1/%4", "/v1/../admin", "/v1/./x", "/v1/%2e%2E/x"]
)
def test_unusable_targets_are_refused(target: str) -> None:
    with pytest.raises(MalformedRequestError):
        canonical_target(target)


@given(st.text(max_size=60).map(lambda t: "/" + t))
def test_normalising_twice_changes_nothing(target: str) -> None:
    try:
        once = canonical_target(target)
    except MalformedRequestError:
        return
    assert canonical_target(once) == once


def test_the_worked_example_of_the_documentation() -> None:
    key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    body = (
        b'{"txn_id":"cash-000123","account_no":"0101234567","amount":12050,"currency":"CNY",'
        b'"method":"cash","paid_at":"2026-11-25T09:58:00+08:00"}'
    )
    headers = sign_request(
        key, "K0001", "POST", "/v1/kiosk/pay", body, now=NOW, nonce="AAECAwQFBgcICQoLDA0ODw"
    )
    assert headers == {
        "X-Paygate-Device": "K0001",
        "X-Paygate-Timestamp": "1795572000",
        "X-Paygate-Nonce": "AAECAwQFBgcICQoLDA0ODw",
        "X-Paygate-Signature": "t+9dz4pWbpkAp03O1CWeNDpC2M0urTb2sXUqcjN2Q6taFtPDEwad4SGe3G+LE2uf"
        "j6EsMQ6+IMR7MGstIlgxDQ==",
    }
    assert canonical_request(
        "post", "/v1/kiosk/pay", "1795572000", headers["X-Paygate-Nonce"], body
    ) == (
        b"POST\n/v1/kiosk/pay\n1795572000\nAAECAwQFBgcICQoLDA0ODw\n"
        b"df55d0098778ca3b65d85ab69d1b26e9cdc012c1ef78d14050e3bb1f90543f5c\n"
    )


def test_sign_request_agrees_with_an_independent_signer() -> None:
    key = ed25519_key("K0001")
    ours = sign_request(key, "K0001", "POST", "/v1/kiosk/pay", BODY, now=NOW, nonce="n" * 22)
    theirs = signed_headers(key, "K0001", BODY, request_nonce="n" * 22)
    assert ours == theirs


def test_sign_request_makes_a_fresh_128_bit_nonce_each_time() -> None:
    key = ed25519_key("K0001")
    nonces = {
        sign_request(key, "K0001", "GET", "/", b"", now=NOW)["X-Paygate-Nonce"] for _ in range(50)
    }
    assert len(nonces) == 50
    assert all(len(base64.urlsafe_b64decode(n + "==")) == 16 for n in nonces)


def test_sign_request_refuses_what_it_could_not_verify() -> None:
    key = ed25519_key("K0001")
    with pytest.raises(InvalidInputError):
        sign_request(key, "bad id", "POST", "/", b"", now=NOW)
    with pytest.raises(MalformedRequestError):
        sign_request(key, "K0001", "POST", "/", b"", now=NOW, nonce="short")
    with pytest.raises(MalformedRequestError):
        sign_request(key, "K0001", "POST", "no-slash", b"", now=NOW)
    with pytest.raises(TypeError):
        sign_request("not a key", "K0001", "POST", "/", b"", now=NOW)  # type: ignore[arg-type]


# ── verification against the real registry ────────────────────────────────────────────────


class Verifier:
    """A registry with kiosk K0001 on a database, and the database's nonce store."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.registry = registry(gateway)
        self.key = ed25519_key("K0001")
        self.registry.add("K0001", "kiosk", public_key_pem=kiosk_support.public_pem(self.key))
        self.nonces = SqlNonceStore(gateway.store)

    def verify(
        self,
        headers: dict[str, str],
        *,
        body: bytes = BODY,
        path: str = "/v1/kiosk/pay",
        method: str = "POST",
        now: datetime = NOW,
    ) -> Any:
        return verify_request(self.registry, self.nonces, method, path, headers, body, now=now)


@pytest.fixture
def verifier(gateway: Gateway) -> Verifier:
    return Verifier(gateway)


def test_a_signed_request_verifies_once(verifier: Verifier) -> None:
    headers = signed_headers(verifier.key, "K0001", BODY)
    assert verifier.verify(headers).device_id == "K0001"
    with pytest.raises(NonceReusedError):
        verifier.verify(headers, now=NOW + timedelta(seconds=30))


def test_header_names_are_matched_in_any_case(verifier: Verifier) -> None:
    headers = {k.lower(): v for k, v in signed_headers(verifier.key, "K0001", BODY).items()}
    assert verifier.verify(headers).device_id == "K0001"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"body": BODY.replace(b"12050", b"92050")}, SignatureError),
        ({"path": "/v1/kiosk/daily-close"}, SignatureError),
        ({"path": "/v1/kiosk/pay?again=1"}, SignatureError),
        ({"method": "PUT"}, SignatureError),
        ({"now": NOW + timedelta(minutes=5, seconds=1)}, StaleTimestampError),
        ({"now": NOW - timedelta(minutes=5, seconds=1)}, StaleTimestampError),
    ],
)
def test_tampering_and_stale_timestamps_are_refused(
    verifier: Verifier, change: dict[str, Any], error: type[Exception]
) -> None:
    headers = signed_headers(verifier.key, "K0001", BODY)
    with pytest.raises(error):
        verifier.verify(headers, **change)
    # The refusal did not burn the nonce: the genuine request still goes through.
    assert verifier.verify(headers).device_id == "K0001"


def test_the_edges_of_the_window_are_inside_it(verifier: Verifier) -> None:
    late = signed_headers(verifier.key, "K0001", BODY)
    assert verifier.verify(late, now=NOW + timedelta(minutes=5)).device_id == "K0001"
    with pytest.raises(NonceReusedError):
        verifier.verify(late, now=NOW + timedelta(minutes=5))
    early = signed_headers(verifier.key, "K0001", BODY)
    assert verifier.verify(early, now=NOW - timedelta(minutes=5)).device_id == "K0001"


def test_a_forgery_cannot_burn_a_real_nonce(verifier: Verifier) -> None:
    genuine = signed_headers(verifier.key, "K0001", BODY)
    forged = signed_headers(
        ed25519_key("intruder"), "K0001", BODY, request_nonce=genuine["X-Paygate-Nonce"]
    )
    with pytest.raises(SignatureError):
        verifier.verify(forged)
    assert verifier.verify(genuine).device_id == "K0001"


def test_revoking_refuses_the_very_next_request(verifier: Verifier) -> None:
    assert verifier.verify(signed_headers(verifier.key, "K0001", BODY)).active
    verifier.registry.revoke("K0001")
    with pytest.raises(DeviceRevokedError):
        verifier.verify(signed_headers(verifier.key, "K0001", BODY))


def test_unknown_devices_and_devices_without_a_signing_key_are_refused(
    verifier: Verifier,
) -> None:
    with pytest.raises(UnknownDeviceError):
        verifier.verify(signed_headers(ed25519_key("K0404"), "K0404", BODY))
    verifier.registry.add("P0001", "pos", mac_key=MAC_KEY)
    with pytest.raises(UnknownKeyError):
        verifier.verify(signed_headers(ed25519_key("P0001"), "P0001", BODY))


def _valid() -> dict[str, str]:
    return signed_headers(ed25519_key("K0001"), "K0001", BODY)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"X-Paygate-Device": None}, "X-Paygate-Device"),
        ({"X-Paygate-Device": ""}, "X-Paygate-Device"),
        ({"X-Paygate-Device": "K0001\nX"}, "X-Paygate-Device"),
        ({"X-Paygate-Timestamp": None}, "X-Paygate-Timestamp"),
        ({"X-Paygate-Timestamp": "2026-11-25T02:00:00Z"}, "X-Paygate-Timestamp"),
        ({"X-Paygate-Timestamp": "-1795572000"}, "X-Paygate-Timestamp"),
        ({"X-Paygate-Timestamp": "17955720000"}, "X-Paygate-Timestamp"),
        ({"X-Paygate-Nonce": None}, "X-Paygate-Nonce"),
        ({"X-Paygate-Nonce": "short"}, "X-Paygate-Nonce"),
        ({"X-Paygate-Nonce": "a" * 21}, "X-Paygate-Nonce"),
        ({"X-Paygate-Nonce": "a" * 25}, "X-Paygate-Nonce"),
        ({"X-Paygate-Nonce": "a+b/" * 6}, "X-Paygate-Nonce"),
        ({"X-Paygate-Nonce": "a" * 65}, "X-Paygate-Nonce"),
        ({"X-Paygate-Signature": None}, "X-Paygate-Signature"),
        ({"X-Paygate-Signature": "not base64!"}, "X-Paygate-Signature"),
        ({"X-Paygate-Signature": base64.b64encode(b"x" * 63).decode()}, "X-Paygate-Signature"),
    ],
)
def test_malformed_headers_are_refused_by_name(
    verifier: Verifier, change: dict[str, str | None], field: str
) -> None:
    headers = _valid()
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(MalformedRequestError) as caught:
        verifier.verify(headers)
    assert caught.value.field == field
    assert isinstance(caught.value, AuthenticationError)


def test_a_header_given_twice_with_different_values_is_refused() -> None:
    headers = _valid()
    headers["x-paygate-device"] = "K0002"
    with pytest.raises(MalformedRequestError):
        read_signed_headers(headers)


def test_nothing_about_a_refusal_is_logged_with_a_key(
    verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier.registry.add("P0001", "pos", mac_key=MAC_KEY)
    verifier.registry.mac_key("P0001")
    assert MAC_KEY.hex() not in caplog.text and KEK_B64 not in caplog.text


# ── properties ────────────────────────────────────────────────────────────────────────────

_header_names = st.sampled_from(
    [
        "X-Paygate-Device",
        "X-Paygate-Timestamp",
        "X-Paygate-Nonce",
        "X-Paygate-Signature",
        "x-paygate-nonce",
        "Content-Type",
    ]
) | st.text(min_size=1, max_size=20)
_header_values = st.sampled_from(
    ["K0001", "1795572000", "AAECAwQFBgcICQoLDA0ODw", base64.b64encode(b"s" * 64).decode(), ""]
) | st.text(max_size=90)


@given(st.dictionaries(_header_names, _header_values, max_size=6))
def test_the_header_parser_raises_only_malformed_request(headers: dict[str, str]) -> None:
    with contextlib.suppress(MalformedRequestError):
        read_signed_headers(headers)


_directory = StaticDevices(device("K0001", key=ed25519_key("K0001")))


@given(
    headers=st.dictionaries(_header_names, _header_values, max_size=6),
    body=st.binary(max_size=200),
    path=st.text(max_size=30),
    method=st.text(max_size=8),
)
def test_verification_raises_only_authentication_errors(
    headers: dict[str, str], body: bytes, path: str, method: str
) -> None:
    with contextlib.suppress(AuthenticationError):
        verify_request(_directory, InMemoryNonceStore(), method, path, headers, body, now=NOW)


# ── the command line ──────────────────────────────────────────────────────────────────────

_cli = Typer()
_cli.add_typer(devices_app, name="devices")
runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(_cli, ["devices", *args], env=env)
    return result.exit_code, result.output


def test_the_command_line_adds_lists_and_revokes(db_url: str, tmp_path: Any) -> None:
    pem = tmp_path / "k0001.pem"
    pem.write_text(kiosk_support.public_pem(ed25519_key("K0001")))
    raw = tmp_path / "k0002.pub"
    raw.write_text(base64.b64encode(kiosk_support.public_raw(ed25519_key("K0002"))).decode())
    env = {KEY_ENCRYPTION_KEY_ENV: KEK_B64, "POS_MAC": MAC_KEY.hex()}
    url = ["--database-url", db_url]
    code, out = cli("add", "K0001", "--channel", "kiosk", "--public-key", str(pem), *url)
    assert code == 0, out
    assert "registered K0001 (kiosk, active): SHA256:" in out
    code, out = cli(
        "add", "K0002", "--channel", "kiosk", "--public-key", str(raw), "--label", "Hall", *url
    )
    assert code == 0, out
    code, out = cli("add", "P0001", "--channel", "pos", "--mac-key-env", "POS_MAC", *url, env=env)
    assert code == 0, out
    assert MAC_KEY.hex() not in out
    code, out = cli("revoke", "K0002", *url)
    assert code == 0 and "revoked K0002" in out
    code, out = cli("list", *url)
    assert code == 0
    assert "K0001" in out and "P0001" in out and "revoked" in out and "Hall" in out
    assert MAC_KEY.hex() not in out


def test_the_command_line_refuses_clearly(db_url: str, tmp_path: Any) -> None:
    url = ["--database-url", db_url]
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    cases = [
        (["add", "K1", "--channel", "kiosk", *url], {}, "exactly one"),
        (["add", "K1", "--channel", "kiosk", "--public-key", str(bad), *url], {}, "--public-key:"),
        (
            ["add", "K1", "--channel", "kiosk", "--public-key", str(tmp_path / "none"), *url],
            {},
            "cannot read",
        ),
        (["add", "P1", "--channel", "pos", "--mac-key-env", "NOPE", *url], {}, "NOPE is not set"),
        (
            ["add", "P1", "--channel", "pos", "--mac-key-env", "M", *url],
            {"M": "zz", KEY_ENCRYPTION_KEY_ENV: KEK_B64},
            "hexadecimal",
        ),
        (
            ["add", "P1", "--channel", "pos", "--mac-key-env", "M", *url],
            {"M": MAC_KEY.hex()},
            KEY_ENCRYPTION_KEY_ENV,
        ),
        (["revoke", "K404", *url], {}, "no device"),
    ]
    for args, env, message in cases:
        code, out = cli(*args, env={KEY_ENCRYPTION_KEY_ENV: "", **env})
        assert code == 2, (args, out)
        assert message in out, (args, out)
    code, out = cli("add", "K1", "--channel", "atm", *url)
    assert code == 2
