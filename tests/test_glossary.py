"""One word per concept: the words docs/architecture.md's Glossary retired stay out of
``paygate/`` and ``docs/``, except where a deprecation alias keeps the old name working.

Each allowed place is named with the retired word it may hold, and every allowed place must
still hold it: an alias removed takes its entry with it, so the list cannot go stale.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = (("paygate", "*.py"), ("docs", "*.md"))

RETIRED: dict[str, re.Pattern[str]] = {
    # The voucher channel.
    "prepaid_card": re.compile(r"prepaid_card", re.IGNORECASE),
    "prepaid card": re.compile(r"prepaid[ -]cards?\b", re.IGNORECASE),
    "recharge card": re.compile(r"recharge[ -]cards?\b", re.IGNORECASE),
    "PrepaidCard": re.compile(r"PrepaidCard|PREPAID_CARD"),
    # The supply order.
    "paygate orders": re.compile(r"paygate orders\b"),
    "/v1/reconnections": re.compile(r"/v1/reconnections\b"),
    "ReconnectionProgress": re.compile(r"ReconnectionProgress"),
    "confirmReconnection": re.compile(r"confirmReconnection"),
    "[reconnections]": re.compile(r"\[(?:api\.)?reconnections\]"),
    # The open finding ("exception" keeps its Python meaning: an error raised).
    "paygate exceptions": re.compile(r"paygate exceptions\b"),
    "exceptions list": re.compile(r"\bexceptions? list\b", re.IGNORECASE),
    "exception for people": re.compile(
        r"\bopen exceptions?\b|\bexceptions? (for (a )?(person|people)|remain|wait)\b"
        r"|\*\*exceptions\*\*",
        re.IGNORECASE,
    ),
    "exceptions_only": re.compile(r"\bexceptions_only\b|\bis_exception\b"),
    "exception key": re.compile(r"""["']exceptions?["']\]"""),
}

# (path, retired word): the deprecation aliases and the pages that name what they replace.
ALLOWED: dict[tuple[str, str], str] = {
    ("paygate/renames.py", "prepaid_card"): "the retired channel name and its alias",
    ("paygate/channels/prepaid_card.py", "prepaid_card"): "the old module, an alias",
    ("paygate/channels/prepaid_card.py", "PrepaidCard"): "the old class names, aliases",
    ("paygate/api/routes/headend.py", "/v1/reconnections"): "the retired path, still served",
    ("paygate/api/routes/headend.py", "confirmReconnection"): "its operation id, deprecated",
    ("paygate/api/schemas.py", "ReconnectionProgress"): "the old schema name, an alias",
    ("paygate/api/config.py", "[reconnections]"): "the retired table, still read",
    ("paygate/api/config.py", "prepaid_card"): "the retired channel table, still read",
    ("paygate/reconcile/runs.py", "exceptions_only"): "the retired keyword, still taken",
    ("paygate/reconcile/report.py", "exception key"): "the JSON report's deprecated keys",
    ("docs/architecture.md", "prepaid_card"): "the Glossary",
    ("docs/architecture.md", "prepaid card"): "the Glossary",
    ("docs/architecture.md", "recharge card"): "the Glossary",
    ("docs/architecture.md", "PrepaidCard"): "the Glossary",
    ("docs/architecture.md", "paygate orders"): "the Glossary",
    ("docs/architecture.md", "/v1/reconnections"): "the Glossary",
    ("docs/architecture.md", "ReconnectionProgress"): "the Glossary",
    ("docs/architecture.md", "confirmReconnection"): "the Glossary",
    ("docs/architecture.md", "[reconnections]"): "the Glossary",
    ("docs/architecture.md", "paygate exceptions"): "the Glossary",
    ("docs/architecture.md", "exceptions_only"): "the Glossary",
    ("docs/channels/voucher.md", "prepaid_card"): "the channel's former name",
    ("docs/channels/voucher.md", "PrepaidCard"): "the channel's former class names",
    ("docs/http-api.md", "/v1/reconnections"): "the retired path, still served",
    ("docs/http-api.md", "confirmReconnection"): "its operation id, deprecated",
    ("docs/http-api.md", "[reconnections]"): "the retired table, still read",
    ("docs/http-api.md", "prepaid_card"): "the retired channel table, still read",
}


def _files() -> Iterator[Path]:
    for folder, pattern in SCANNED:
        yield from sorted((ROOT / folder).rglob(pattern))


def _found(text: str) -> set[str]:
    return {word for word, pattern in RETIRED.items() if pattern.search(text)}


def _places() -> dict[tuple[str, str], list[int]]:
    places: dict[tuple[str, str], list[int]] = {}
    for path in _files():
        name = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for word in _found(line):
                places.setdefault((name, word), []).append(number)
    return places


def test_no_retired_word_outside_the_deprecation_aliases() -> None:
    stray = {
        f"{path}:{lines[0]}: {word!r}": lines
        for (path, word), lines in _places().items()
        if (path, word) not in ALLOWED
    }
    assert stray == {}, "retired words (docs/architecture.md, Glossary): " + ", ".join(stray)


def test_every_allowed_place_still_holds_its_alias() -> None:
    places = _places()
    assert [key for key in ALLOWED if key not in places] == []


@pytest.mark.parametrize(
    ("line", "word"),
    [
        ("channel = 'prepaid_card'", "prepaid_card"),
        ("Redeem a Recharge Card now", "recharge card"),
        ("sold as prepaid cards", "prepaid card"),
        ("see `paygate orders list`", "paygate orders"),
        ("POST /v1/reconnections/1/confirm", "/v1/reconnections"),
        ("run `paygate exceptions list`", "paygate exceptions"),
        ("work the exceptions list", "exceptions list"),
        ("left as an exception for a person", "exception for people"),
        ("3 open exceptions", "exception for people"),
        ("exceptions remain", "exception for people"),
        ("Exceptions wait for a person", "exception for people"),
        ("**Exceptions** are what", "exception for people"),
        ("findings(gateway, 1, exceptions_only=True)", "exceptions_only"),
        ('data["exceptions"] = 1', "exception key"),
    ],
)
def test_the_scan_finds_each_retired_word(line: str, word: str) -> None:
    assert word in _found(line)


@pytest.mark.parametrize(
    "line",
    [
        "a recharge voucher card is a voucher",
        "a prepaid account's credit",
        "the one exception hierarchy (drawn in its docstring)",
        "an exception is raised and logged",
        "it never appears in a repr, an exception or a log record",
        "A finding is a value, never an exception",
        "mapped from paygate's one exception tree",
        "a reconnection order and a disconnection order are supply orders",
        "paygate supply-orders list; paygate findings list",
        "from cryptography.exceptions import InvalidTag",
    ],
)
def test_the_words_in_use_are_not_taken_for_retired_ones(line: str) -> None:
    assert _found(line) == set()
