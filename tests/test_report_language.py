"""The reports' languages, numbers and scales: the catalogue, the one number formatter, the
chart axes, and ``--lang`` / ``[reports] lang`` on the command line."""

from __future__ import annotations

import io
import re
import string
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from paygate.cli import app
from paygate.cli.reports import reports_app
from paygate.errors import InvalidInputError
from paygate.gateway import Gateway
from paygate.money import CURRENCY_EXPONENTS, Money
from paygate.reports import render_html, render_table
from paygate.reports.axis import DURATION_STEPS, duration_axis, number_axis
from paygate.reports.catalogue import CATALOGUE
from paygate.reports.i18n import (
    DEFAULT_LANG,
    LANGS,
    Words,
    format_amount,
    format_money,
    format_number,
)
from tests.test_report_pages import month_of_orders

CJK = re.compile(r"[\u4e00-\u9fff]")
# Sentences that are the same in Chinese: a symbol, or placeholders alone.
SAME = {"p95", "{step} {budget}", "{step}: {title}", ", "}
runner = CliRunner()


# --- the catalogue ----------------------------------------------------------------------------


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_chinese_sentence_keeps_the_placeholders_of_its_english() -> None:
    for english, chinese in CATALOGUE.items():
        assert _fields(english) == _fields(chinese), english
        assert chinese.strip() == chinese and chinese, english
        if english not in SAME:
            assert CJK.search(chinese), f"not Chinese: {english!r} → {chinese!r}"


def test_the_domain_terms_are_the_utilitys_own() -> None:
    chinese = " ".join(CATALOGUE.values())
    for term in ("服务承诺", "差错", "障碍", "事故", "对账", "挂账", "差异", "渠道", "欠费复电"):
        assert term in chinese, term
    assert CATALOGUE["minor"] == "差错" and CATALOGUE["major"] == "障碍"
    assert CATALOGUE["critical"] == "事故"


def test_a_sentence_missing_from_the_catalogue_is_an_error_not_english() -> None:
    with pytest.raises(KeyError):
        Words("zh-CN")("a sentence no report has")
    assert Words("en")("{n} orders", n=3) == "3 orders"


@pytest.mark.parametrize("lang", ["fr", "zh", "EN", "", "zh_CN"])
def test_an_unknown_language_is_refused_naming_the_field(lang: str) -> None:
    with pytest.raises(InvalidInputError, match="not a report language") as caught:
        Words(lang)
    assert caught.value.field == "lang"


def test_the_service_report_is_whole_in_either_language() -> None:
    report = month_of_orders()
    for lang in LANGS:
        page = render_html(report, lang=lang)  # every sentence found, or KeyError
        assert f'<html lang="{lang}">' in page
    assert DEFAULT_LANG == "zh-CN"


# --- numbers ----------------------------------------------------------------------------------

GROUPED = re.compile(r"-?\d{1,3}(,\d{3})*")


@given(value=st.integers(-(10**15), 10**15), lang=st.sampled_from(LANGS))
def test_a_count_is_grouped_and_reads_back(value: int, lang: str) -> None:
    words = Words(lang)
    shown = words.number(value)
    assert GROUPED.fullmatch(shown), shown
    assert int(shown.replace(",", "")) == value
    assert shown == format_number(value, words.lang)


@given(
    minor=st.integers(-(10**15), 10**15),
    currency=st.sampled_from(["CNY", "USD", "JPY", "KWD", "HKD"]),
    lang=st.sampled_from(LANGS),
)
def test_an_amount_is_grouped_with_its_currency_and_exact(
    minor: int, currency: str, lang: str
) -> None:
    money = Money(minor, currency)
    shown = Words(lang).money(money)
    number = re.search(r"[\d,]+(\.\d+)?", shown)
    assert number is not None, shown
    digits = number.group()
    assert GROUPED.fullmatch(digits.split(".")[0]), shown
    sign = -1 if shown.startswith("-") else 1
    assert sign * Decimal(digits.replace(",", "")) == money.to_decimal()  # nothing rounded
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    assert decimals == CURRENCY_EXPONENTS[currency]  # every minor unit, no more
    assert shown.replace(digits, "") not in ("", "-")  # the currency is shown


def test_the_complaints_numbers_are_shown_grouped() -> None:
    assert format_money(Money(9_996_165_611, "CNY"), "zh-CN") == "¥99,961,656.11"
    assert format_money(Money(9_996_165_611, "CNY"), "en") == "CN¥99,961,656.11"
    assert format_money(Money(-500, "CNY"), "zh-CN") == "-¥5.00"
    assert format_number(200_000, "zh-CN") == format_number(200_000, "en") == "200,000"
    assert format_money(Money(5_000_000, "CNY"), "zh-CN", whole=True) == "¥50,000"
    assert format_money(Money(5, "CNY"), "zh-CN", whole=True) == "¥0.05"  # never rounded


# --- scales -----------------------------------------------------------------------------------


@given(maximum=st.floats(0, 1e13, allow_nan=False), most=st.integers(2, 8))
def test_a_number_axis_covers_its_data_with_few_round_ticks(maximum: float, most: int) -> None:
    axis = number_axis(maximum, most=most)
    assert axis.top >= maximum
    assert 2 <= len(axis.ticks) <= most + 1
    assert axis.ticks[0] == 0 and axis.ticks[-1] == pytest.approx(axis.top)
    mantissa = axis.step / 10 ** int(f"{axis.step:e}".split("e")[1])
    assert round(mantissa, 6) in (1.0, 2.0, 2.5, 5.0)
    assert axis.step >= 1 and axis.step == int(axis.step)  # counts, minor units: whole ticks
    # not wasteful: one step fewer would not reach the data
    assert axis.top - axis.step < max(maximum, 1)
    assert 0 <= axis.position(maximum) <= 1


@given(seconds=st.floats(0, 90 * 24 * 3600, allow_nan=False))
def test_a_duration_axis_covers_its_data_at_whole_minutes_or_hours(seconds: float) -> None:
    axis = duration_axis(seconds)
    assert axis.top >= seconds
    assert axis.step in DURATION_STEPS
    assert len(axis.ticks) <= 7 or axis.step == DURATION_STEPS[-1]
    assert 0 <= axis.position(seconds) <= 1


def test_the_dispatch_scale_of_the_complaint_runs_past_its_longest_p95() -> None:
    # p95s of 1:40 to 22:40 once all drew as one arrow clipped at 0:30
    axis = duration_axis((22 * 60 + 40) * 60)
    assert (axis.step, axis.top) == (6 * 3600, 24 * 3600)
    assert axis.position(100 * 60) < axis.position((22 * 60 + 40) * 60) < 1


# --- the command line -------------------------------------------------------------------------

service = typer.Typer()
service.add_typer(reports_app, name="report")


def test_an_unknown_lang_exits_2_naming_the_flag_before_any_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    result = runner.invoke(
        service,
        ["report", "service", "--from", "2026-11-01", "--to", "2026-11-30", "--lang", "fr",
         "--format", "html", "--database-url", url],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--lang: 'fr' is not a report language (one of zh-CN, en)" in result.output
    assert not (tmp_path / "never.db").exists()
    result = runner.invoke(
        app,
        ["reconcile", "kiosk", "--date", "2026-11-24", "--lang", "fr", "--database-url", url],
    )
    assert result.exit_code == 2
    assert "--lang: 'fr' is not a report language" in result.output
    assert not (tmp_path / "never.db").exists()


def test_the_default_language_comes_from_the_configuration(
    gateway: Gateway, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = runner.invoke(app, ["config", "show", "--database-url", db_url])
    assert 'reports.lang = "zh-CN"  # default' in shown.output
    period = ["--from", "2026-11-01", "--to", "2026-11-30", "--format", "html"]
    target = tmp_path / "service.html"
    args = ["report", "service", *period, "--database-url", db_url, "--output", str(target)]
    assert runner.invoke(service, args).exit_code == 0
    assert '<html lang="zh-CN">' in target.read_text(encoding="utf-8")
    config = tmp_path / "paygate.toml"
    config.write_text('[reports]\nlang = "en"\n', encoding="utf-8")
    monkeypatch.setenv("PAYGATE_CONFIG", str(config))
    shown = runner.invoke(app, ["config", "show", "--database-url", db_url])
    assert 'reports.lang = "en"  # file' in shown.output
    assert runner.invoke(service, args).exit_code == 0
    assert '<html lang="en">' in target.read_text(encoding="utf-8")
    # the flag wins over the file
    assert runner.invoke(service, [*args, "--lang", "zh-CN"]).exit_code == 0
    assert "服务承诺" in target.read_text(encoding="utf-8")
    config.write_text('[reports]\nlang = "fr"\n', encoding="utf-8")
    refused = runner.invoke(app, ["config", "show", "--database-url", db_url])
    assert refused.exit_code == 2 and "reports.lang" in refused.output


def test_the_terminal_reports_group_their_numbers_too() -> None:
    console = Console(file=io.StringIO(), width=240, color_system=None)
    console.print(render_table(month_of_orders()))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "200,000" in text and "480,224" in text
    assert "200000" not in text and "480224" not in text
    assert format_amount(Money(9_996_165_611, "CNY")) == "99,961,656.11"
    assert format_amount(Money(-500, "CNY")) == "-5.00"
    assert format_amount(Money(1_234, "KWD")) == "1.234"
    assert format_amount(Money(1_000_000, "JPY")) == "1,000,000"
