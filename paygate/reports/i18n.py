"""The reports' languages and numbers: every word the HTML reports show, in English and in
Chinese, and the one way a report writes a count or an amount.

Invariant: a report never formats a number itself. Counts go through :func:`format_number` and
amounts through :func:`format_money` (grouped thousands, the currency's sign, every minor unit
kept: never rounded, never a float), in the reader's locale. Every sentence a report shows is
looked up in :data:`CATALOGUE` by its English text; a sentence missing from it is a
``KeyError`` the moment a Chinese page is rendered, never an English sentence slipped into a
Chinese page. The Chinese is the utility's own vocabulary: 电费, 违约金, 欠费复电, 停电, 复电,
服务承诺, the three breach severities 差错 / 障碍 / 事故, 对账, 挂账, 差异, 渠道.

The catalogue itself lives in :mod:`paygate.reports.catalogue`.
"""

from __future__ import annotations

from typing import Final, get_args

from babel.numbers import format_currency, format_decimal

from paygate.config.sections import ReportLang
from paygate.errors import InvalidInputError
from paygate.money import Money, minor_units_exponent
from paygate.reports.catalogue import CATALOGUE

__all__ = [
    "DEFAULT_LANG",
    "LANGS",
    "Lang",
    "Words",
    "format_amount",
    "format_money",
    "format_number",
]

Lang = ReportLang
"""A report's language, as an IETF tag (the page's ``lang`` attribute): ``[reports] lang``."""
LANGS: Final[tuple[Lang, ...]] = get_args(Lang)
DEFAULT_LANG: Final[Lang] = "zh-CN"
"""The language of reports when neither ``--lang`` nor ``[reports] lang`` says otherwise."""

_LOCALES: Final[dict[Lang, str]] = {"zh-CN": "zh_CN", "en": "en"}


def _lang(value: str) -> Lang:
    for lang in LANGS:
        if value == lang:
            return lang
    raise InvalidInputError(
        f"{value!r} is not a report language (one of {', '.join(LANGS)})", field="lang"
    )


def format_number(value: int, lang: Lang) -> str:
    """A count with its thousands grouped as ``lang`` groups them: ``200,000``."""
    return format_decimal(value, locale=_LOCALES[lang])


def format_money(value: Money, lang: Lang, *, whole: bool = False) -> str:
    """An amount with its thousands grouped and its currency's sign: ``¥99,961,656.11``.

    Exact: the amount's decimal is formatted as is (every minor unit of its currency shown,
    nothing rounded), with a leading minus for a negative amount. ``whole`` leaves out the
    decimals of an amount that has none (``¥50,000``, for a chart's tick); an amount with a
    fraction is shown whole anyway.
    """
    amount = value.to_decimal()
    if whole and amount == amount.to_integral_value():
        return format_currency(
            amount,
            value.currency,
            format="¤#,##0",
            locale=_LOCALES[lang],
            currency_digits=False,
        )
    return format_currency(
        amount,
        value.currency,
        locale=_LOCALES[lang],
        decimal_quantization=False,
    )


def format_amount(value: Money, lang: Lang = "en") -> str:
    """An amount's number alone, grouped, with exactly its currency's decimals: ``1,234.50``.

    For a column whose header names the currency (a terminal table); exact, never rounded.
    """
    digits = minor_units_exponent(value.currency)
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value.to_decimal(), format=pattern, locale=_LOCALES[lang])


class Words:
    """The words and numbers of one language: ``words("open findings")`` and
    ``words.money(amount)``.

    ``lang`` is ``"zh-CN"`` or ``"en"``; anything else is refused naming the field ``lang``.
    """

    __slots__ = ("lang",)

    def __init__(self, lang: str) -> None:
        self.lang: Lang = _lang(lang)

    def __call__(self, text: str, /, **values: object) -> str:
        """``text`` in this language, its ``{placeholders}`` filled from ``values``.

        Raises KeyError for a sentence the catalogue does not have (in Chinese).
        """
        template = text if self.lang == "en" else CATALOGUE[text]
        return template.format(**values) if values else template

    def number(self, value: int) -> str:
        """:func:`format_number` in this language."""
        return format_number(value, self.lang)

    def money(self, value: Money, *, whole: bool = False) -> str:
        """:func:`format_money` in this language."""
        return format_money(value, self.lang, whole=whole)
