"""Card serials: 11 digits counting up and a Luhn check digit, so a typing error is caught
before any card is looked at."""

from __future__ import annotations

import re
from typing import Final

from paygate.vouchers.errors import InvalidSerialError

SERIAL_LENGTH: Final = 12
"""Digits in a serial: an 11-digit number and its Luhn check digit."""
# Serials count up from here, so every serial has exactly SERIAL_LENGTH digits and none
# starts with 0: text order is number order, and a serial is never mistaken for a PIN,
# which is longer.
_FIRST_SERIAL_NUMBER: Final = 10**10
_LAST_SERIAL_NUMBER: Final = 10**11 - 1


_PIN_SEPARATORS = re.compile(r"[\s-]+")


# ── serials ──────────────────────────────────────────────────────────────────────────────


def luhn_check_digit(digits: str) -> str:
    """The Luhn check digit of ``digits`` (ASCII digits), as one character."""
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("Luhn check digits are computed over ASCII digits")
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def make_serial(number: int) -> str:
    """The serial of card ``number``: its 11 digits and their check digit."""
    if not _FIRST_SERIAL_NUMBER <= number <= _LAST_SERIAL_NUMBER:
        raise ValueError(f"a card number has 11 digits, not {number}")
    body = str(number)
    return body + luhn_check_digit(body)


def _normalize(text: str) -> str:
    # Serials and PINs are printed in groups; customers type them with spaces or dashes.
    return _PIN_SEPARATORS.sub("", text)


def serial_is_valid(serial: str) -> bool:
    """True when ``serial`` (spaces and dashes aside) is a serial with a good check digit."""
    text = _normalize(serial)
    return (
        len(text) == SERIAL_LENGTH
        and text.isascii()
        and text.isdigit()
        and text[0] != "0"
        and luhn_check_digit(text[:-1]) == text[-1]
    )


def check_serial(serial: str, *, field: str = "serial") -> str:
    """Return ``serial`` normalized, or refuse it with :class:`InvalidSerialError`."""
    if not isinstance(serial, str):
        raise InvalidSerialError("a serial is text", field=field)
    text = _normalize(serial)
    if not (len(text) == SERIAL_LENGTH and text.isascii() and text.isdigit() and text[0] != "0"):
        # Not echoed: a PIN typed into the serial field must not reach an error or a log.
        raise InvalidSerialError(f"a serial is {SERIAL_LENGTH} digits", field=field)
    if luhn_check_digit(text[:-1]) != text[-1]:
        raise InvalidSerialError(f"serial {text}: the check digit does not match", field=field)
    return text


def _serial_number(serial: str) -> int:
    return int(serial[:-1])
