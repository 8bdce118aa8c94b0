"""Money: an exact amount in integer minor units of one ISO 4217 currency.

Invariant: an amount is never a float. ``Money(12050, "CNY")`` is 120.50 yuan; text and
``Decimal`` are accepted only at the edges through :meth:`Money.parse`, which refuses anything
that is not a whole number of minor units. Arithmetic mixes only amounts of one currency, and
no amount leaves the range a ledger column holds (a signed 64-bit integer of minor units,
:data:`MAX_MINOR`): beyond it construction and arithmetic raise
:class:`~paygate.errors.InvalidAmountError`, never an overflow in the database.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from paygate.errors import CurrencyMismatchError, InvalidAmountError

__all__ = ["CURRENCY_EXPONENTS", "MAX_MINOR", "Money", "minor_units_exponent", "round_half_up"]

MAX_MINOR: Final = 2**63 - 1
"""The largest magnitude of an amount in minor units: what a BIGINT ledger column holds.

The range is symmetric (``-MAX_MINOR`` is the least amount) so that negating an amount never
leaves it.
"""

# The one text form of an amount: ASCII digits, an optional single point with digits after
# it, an optional leading minus. No sign "+", grouping commas, exponents, underscores,
# whitespace or non-ASCII digits: Decimal() and int() accept all of those, and a wallet
# that sends "1,20" must not be read as 120 yuan.
_AMOUNT_TEXT: Final = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")

# More significant digits than any amount within MAX_MINOR has: refused before int() is
# asked to convert a huge number (which it refuses with a bare ValueError past 4300 digits).
_MAX_DIGITS: Final = 19


def _shown(value: str) -> str:
    # Amount text comes from outside: quoted, escaped and cut, never echoed whole.
    return repr(value if len(value) <= 24 else value[:24] + "…")


# Minor-unit exponents of ISO 4217: the active codes, and the legacy European ones still met
# in old bank statements (DEM, FRF, ITL ...).
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    "AED": 2,
    "AFN": 2,
    "ALL": 2,
    "AMD": 2,
    "ANG": 2,
    "AOA": 2,
    "ARS": 2,
    "ATS": 2,
    "AUD": 2,
    "AWG": 2,
    "AZN": 2,
    "BAM": 2,
    "BBD": 2,
    "BDT": 2,
    "BEF": 0,
    "BGN": 2,
    "BHD": 3,
    "BIF": 0,
    "BMD": 2,
    "BND": 2,
    "BOB": 2,
    "BOV": 2,
    "BRL": 2,
    "BSD": 2,
    "BTN": 2,
    "BWP": 2,
    "BYN": 2,
    "BZD": 2,
    "CAD": 2,
    "CDF": 2,
    "CHE": 2,
    "CHF": 2,
    "CHW": 2,
    "CLF": 4,
    "CLP": 0,
    "CNY": 2,
    "COP": 2,
    "COU": 2,
    "CRC": 2,
    "CUP": 2,
    "CVE": 2,
    "CZK": 2,
    "DEM": 2,
    "DJF": 0,
    "DKK": 2,
    "DOP": 2,
    "DZD": 2,
    "EGP": 2,
    "ERN": 2,
    "ESP": 0,
    "ETB": 2,
    "EUR": 2,
    "FIM": 2,
    "FJD": 2,
    "FKP": 2,
    "FRF": 2,
    "GBP": 2,
    "GEL": 2,
    "GHS": 2,
    "GIP": 2,
    "GMD": 2,
    "GNF": 0,
    "GRD": 0,
    "GTQ": 2,
    "GYD": 2,
    "HKD": 2,
    "HNL": 2,
    "HTG": 2,
    "HUF": 2,
    "IDR": 2,
    "IEP": 2,
    "ILS": 2,
    "INR": 2,
    "IQD": 3,
    "IRR": 2,
    "ISK": 0,
    "ITL": 0,
    "JMD": 2,
    "JOD": 3,
    "JPY": 0,
    "KES": 2,
    "KGS": 2,
    "KHR": 2,
    "KMF": 0,
    "KPW": 2,
    "KRW": 0,
    "KWD": 3,
    "KYD": 2,
    "KZT": 2,
    "LAK": 2,
    "LBP": 2,
    "LKR": 2,
    "LRD": 2,
    "LSL": 2,
    "LUF": 0,
    "LYD": 3,
    "MAD": 2,
    "MDL": 2,
    "MGA": 2,
    "MKD": 2,
    "MMK": 2,
    "MNT": 2,
    "MOP": 2,
    "MRU": 2,
    "MUR": 2,
    "MVR": 2,
    "MWK": 2,
    "MXN": 2,
    "MXV": 2,
    "MYR": 2,
    "MZN": 2,
    "NAD": 2,
    "NGN": 2,
    "NIO": 2,
    "NLG": 2,
    "NOK": 2,
    "NPR": 2,
    "NZD": 2,
    "OMR": 3,
    "PAB": 2,
    "PEN": 2,
    "PGK": 2,
    "PHP": 2,
    "PKR": 2,
    "PLN": 2,
    "PTE": 2,
    "PYG": 0,
    "QAR": 2,
    "RON": 2,
    "RSD": 2,
    "RUB": 2,
    "RWF": 0,
    "SAR": 2,
    "SBD": 2,
    "SCR": 2,
    "SDG": 2,
    "SEK": 2,
    "SGD": 2,
    "SHP": 2,
    "SLE": 2,
    "SOS": 2,
    "SRD": 2,
    "SSP": 2,
    "STN": 2,
    "SVC": 2,
    "SYP": 2,
    "SZL": 2,
    "THB": 2,
    "TJS": 2,
    "TMT": 2,
    "TND": 3,
    "TOP": 2,
    "TRY": 2,
    "TTD": 2,
    "TWD": 2,
    "TZS": 2,
    "UAH": 2,
    "UGX": 0,
    "USD": 2,
    "USN": 2,
    "UYI": 0,
    "UYU": 2,
    "UYW": 4,
    "UZS": 2,
    "VED": 2,
    "VES": 2,
    "VND": 0,
    "VUV": 0,
    "WST": 2,
    "XAF": 0,
    "XCD": 2,
    "XCG": 2,
    "XOF": 0,
    "XPF": 0,
    "YER": 2,
    "ZAR": 2,
    "ZMW": 2,
    "ZWG": 2,
}


def minor_units_exponent(currency: str) -> int:
    """Return how many decimal places the minor unit of ``currency`` has (CNY → 2)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidAmountError(f"unknown currency {currency!r}", field="currency") from None


def _parse_text(text: str, exponent: int, currency: str) -> int:
    """The minor units ``text`` states exactly, or InvalidAmountError naming why not."""
    if not text:
        raise InvalidAmountError("empty amount", field="amount")
    match = _AMOUNT_TEXT.fullmatch(text)
    if match is None:
        raise InvalidAmountError(
            f"not a plain decimal amount (digits and at most one '.'): {_shown(text)}",
            field="amount",
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent:
        raise InvalidAmountError(
            f"{_shown(text)} has more than {exponent} decimal places for {currency}",
            field="amount",
        )
    # Leading zeros are padding (fixed-width files zero-fill amounts to any width).
    digits = (whole + fraction.ljust(exponent, "0")).lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        raise InvalidAmountError(
            "the amount is beyond the largest the ledger holds", field="amount"
        )
    minor = int(digits)
    return -minor if text.startswith("-") else minor


def round_half_up(value: Fraction) -> int:
    """Round an exact fraction of minor units to a whole number, halves away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    if rest * 2 >= magnitude.denominator:
        whole += 1
    return sign * whole


class Money:
    """An exact amount of one currency, held as an integer number of minor units."""

    __slots__ = ("_currency", "_minor")

    _minor: int
    _currency: str

    def __init__(self, minor: int, currency: str) -> None:
        # bool is an int subclass; True yuan-fen is never meant.
        if type(minor) is not int:
            raise TypeError(
                f"Money takes an integer number of minor units, not {type(minor).__name__}; "
                "use Money.parse() for text or Decimal"
            )
        if not isinstance(currency, str):
            raise TypeError("currency must be an ISO 4217 code such as 'CNY'")
        minor_units_exponent(currency)
        if not -MAX_MINOR <= minor <= MAX_MINOR:
            raise InvalidAmountError(
                f"the amount is beyond the largest the ledger holds "
                f"(2**63 - 1 minor units of {currency} either way)",
                field="amount",
            )
        object.__setattr__(self, "_minor", minor)
        object.__setattr__(self, "_currency", currency)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Money is immutable")

    @property
    def minor(self) -> int:
        """The amount in minor units (fen for CNY)."""
        return self._minor

    @property
    def currency(self) -> str:
        """The ISO 4217 currency code."""
        return self._currency

    @classmethod
    def parse(cls, value: str | Decimal | int, currency: str) -> Money:
        """Read a major-unit amount such as ``"120.50"`` or ``Decimal("120.5")``.

        Text must be a plain decimal: ASCII digits, optionally one ``.`` followed by at most
        as many digits as the currency has minor units, optionally one leading ``-`` (amounts
        are signed: a refund line or a fee on a statement is negative; whether a field may be
        negative is its reader's rule). Refused with
        :class:`~paygate.errors.InvalidAmountError`: grouping commas (``"1,20"``), exponents
        (``"1.205e2"``), ``_``, ``+``, whitespace anywhere, non-ASCII digits, more decimals
        than the currency has (``"120.505"``, also ``"120.500"``), and any amount beyond
        :data:`MAX_MINOR` minor units. A ``Decimal`` must be finite and exact in minor units;
        an ``int`` is taken as whole major units (``parse(3, "CNY")`` is 3.00 yuan); a float
        or a bool is a ``TypeError``.
        """
        if isinstance(value, float):
            raise TypeError("a float is not an amount of money; pass text or Decimal")
        if isinstance(value, bool):
            raise TypeError("a bool is not an amount of money")
        exponent = minor_units_exponent(currency)
        if isinstance(value, int):
            return cls(value * 10**exponent, currency)
        if isinstance(value, str):
            return cls(_parse_text(value, exponent, currency), currency)
        if not isinstance(value, Decimal):
            raise TypeError(f"cannot read money from {type(value).__name__}")
        if not value.is_finite():
            raise InvalidAmountError(f"not a finite amount: {value!r}", field="amount")
        # adjusted() is the power of ten of the leading digit: anything past 10**19 is beyond
        # MAX_MINOR whatever the currency, refused before int() builds a huge number.
        if value and value.adjusted() > 19:
            raise InvalidAmountError("beyond the largest amount the ledger holds", field="amount")
        scaled = value.scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise InvalidAmountError(
                f"{value!r} has more than {exponent} decimal places for {currency}",
                field="amount",
            )
        return cls(int(scaled), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero in ``currency``."""
        return cls(0, currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units as an exact Decimal (for display and file formats)."""
        exponent = minor_units_exponent(self._currency)
        return Decimal(self._minor).scaleb(-exponent)

    def format(self) -> str:
        """The amount in major units with exactly the currency's decimal places: ``120.50``."""
        exponent = minor_units_exponent(self._currency)
        quantum = Decimal(1).scaleb(-exponent)
        return str(self.to_decimal().quantize(quantum, rounding=ROUND_HALF_UP))

    def _check(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other._currency != self._currency:
            raise CurrencyMismatchError(
                f"cannot combine {self._currency} with {other._currency}", field="currency"
            )
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self._minor + self._check(other)._minor, self._currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self._minor - self._check(other)._minor, self._currency)

    def __neg__(self) -> Money:
        return Money(-self._minor, self._currency)

    def __abs__(self) -> Money:
        return Money(abs(self._minor), self._currency)

    def __mul__(self, factor: int) -> Money:
        if type(factor) is not int:
            raise TypeError("Money can only be multiplied by an int")
        return Money(self._minor * factor, self._currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        return self._minor < self._check(other)._minor

    def __le__(self, other: Money) -> bool:
        return self._minor <= self._check(other)._minor

    def __gt__(self, other: Money) -> bool:
        return self._minor > self._check(other)._minor

    def __ge__(self, other: Money) -> bool:
        return self._minor >= self._check(other)._minor

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self._minor == other._minor and self._currency == other._currency

    def __hash__(self) -> int:
        return hash((self._minor, self._currency))

    def __bool__(self) -> bool:
        return self._minor != 0

    def __repr__(self) -> str:
        return f"Money({self._minor}, {self._currency!r})"

    def __str__(self) -> str:
        return f"{self.format()} {self._currency}"

    def __reduce__(self) -> tuple[type[Money], tuple[int, str]]:
        return (Money, (self._minor, self._currency))

    # pydantic: Money appears in frozen models as {"minor": 12050, "currency": "CNY"}.
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        def from_mapping(value: Any) -> Money:
            if isinstance(value, Money):
                return value
            if isinstance(value, dict):
                minor = value.get("minor")
                currency = value.get("currency")
                if type(minor) is not int:
                    raise ValueError("minor must be an integer number of minor units")
                if not isinstance(currency, str):
                    raise ValueError("currency must be an ISO 4217 code")
                return Money(minor, currency)
            raise ValueError("expected {'minor': int, 'currency': str}")

        # One shape both ways, so that JSON Schema (and OpenAPI) documents what is sent too.
        shape = core_schema.typed_dict_schema(
            {
                "minor": core_schema.typed_dict_field(core_schema.int_schema()),
                "currency": core_schema.typed_dict_field(
                    core_schema.str_schema(min_length=3, max_length=3)
                ),
            }
        )
        return core_schema.no_info_plain_validator_function(
            from_mapping,
            json_schema_input_schema=shape,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda m: {"minor": m.minor, "currency": m.currency}, return_schema=shape
            ),
        )
