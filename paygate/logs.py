"""Logs for operators: one format (text or JSON lines), structured fields, no secret ever shown.

Invariants:

* **One formatter for every logger of a process.** :func:`logging_config` is the
  :func:`logging.config.dictConfig` dictionary that ``paygate serve`` hands uvicorn (which
  applies it in every worker) and ``paygate dispatch`` applies itself: paygate's loggers and
  uvicorn's (``uvicorn.error``, ``uvicorn.access``) all go through it.
* **Fields, not prose.** A record's structured fields are passed as ``extra=`` under the
  names of :data:`FIELDS`; the JSON format writes them as members, the text format as
  ``name=value`` after the message. A record logged while an HTTP request is answered carries
  that request's id (``request_id``) without being given it (:data:`request_id`).
* **No secret is shown.** :class:`SecretMask`, on every handler, masks the shapes secrets take
  — a URL's password, ``password=``/``secret=``/``token=``/``pin=``/``signature=`` values and
  their JSON and header forms, long hex or base64 strings (keys, HMACs, Ed25519 signatures),
  PEM blocks — in the message, the fields and the traceback. It is defence in depth: no
  paygate log call passes a secret in the first place.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Final, Literal, Protocol, TextIO, cast

from paygate.errors import ConfigurationError

__all__ = [
    "FIELDS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogFormat",
    "LogLevel",
    "RequestIdFilter",
    "SecretMask",
    "StderrHandler",
    "TextFormatter",
    "configure_logging",
    "log_options",
    "logging_config",
    "mask_secrets",
    "request_id",
]

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("debug", "info", "warning", "error")
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")

FIELDS: Final = (
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "client",
    "device",
    "channel",
    "order_id",
    "event_id",
    "headend",
    "sink",
    "attempt",
    "retry_at",
    "error",
)
"""The structured fields a record may carry (``extra={...}``), in the order they are written."""

request_id: ContextVar[str | None] = ContextVar("paygate_request_id", default=None)
"""The id of the HTTP request being answered (set by the app's request middleware)."""

MASK: Final = "***"

# Names whose values are secrets, within a longer name (``callback_secret``, ``pin_key``).
_NAMES: Final = r"(?:password|passwd|secret|token|signature|api_?key|private_?key|pin_key)"

_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # PEM blocks: private keys and anything else armoured.
    (
        re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL),
        "-----" + MASK + "-----",
    ),
    # scheme://user:password@host
    (re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+(?=@)"), MASK),
    # "secret": "value" and 'pin': 'value' (JSON, reprs of dicts)
    (
        re.compile(
            r"(?P<keep>[\"'](?:[\w-]*" + _NAMES + r"[\w-]*|pin|pin_code)[\"']\s*:\s*)"
            r"(?:\"[^\"]*\"|'[^']*'|[^\s,}]+)",
            re.IGNORECASE,
        ),
        f'"{MASK}"',
    ),
    # Header: value (Authorization, X-Paygate-Signature, X-Device-Signature, ...)
    (
        re.compile(
            r"(?P<keep>\b(?:authorization|[\w-]*signature|[\w-]*secret|[\w-]*token)\s*:\s*)"
            r"(?:bearer\s+|basic\s+)?[^\s,;\"']+",
            re.IGNORECASE,
        ),
        MASK,
    ),
    # key=value (query strings, DSNs, reprs)
    (
        re.compile(
            r"(?P<keep>\b(?:[\w-]*" + _NAMES + r"[\w-]*|pin|pin_code)=)"
            r"(?:'[^']*'|\"[^\"]*\"|[^\s&,;)\"']+)",
            re.IGNORECASE,
        ),
        MASK,
    ),
    # Long hex (HMACs, keys; a request id is 32 hex digits and stays) and long base64.
    (re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{40,}(?![0-9A-Za-z])"), MASK),
    # (base64 only with upper- and lower-case letters and digits: a path or a name is left)
    (re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{43,}={0,2}(?![A-Za-z0-9+/=_-])"), MASK),
)


def _base64_like(found: re.Match[str]) -> str:
    text = found.group(0)
    mixed = (any(c.isupper() for c in text), any(c.islower() for c in text))
    return MASK if all(mixed) and any(c.isdigit() for c in text) else text


# Every pattern above but the last two needs one of these words in the text; the last two
# (long hex and base64) need 40 characters: most of what is logged is let through at once.
_HINT: Final = re.compile(r"://|pass|secret|token|pin|signature|key|authoriz|-----", re.I)
_LONG: Final = 40


def mask_secrets(text: str) -> str:
    """``text`` with every secret-shaped part replaced by ``***``."""
    hinted = _HINT.search(text) is not None
    if not hinted and len(text) < _LONG:
        return text
    for index, (pattern, replacement) in enumerate(_PATTERNS):
        if index < len(_PATTERNS) - 2 and not hinted:
            continue
        if index == len(_PATTERNS) - 1:
            text = pattern.sub(_base64_like, text)
        elif "keep" in pattern.groupindex:
            text = pattern.sub(r"\g<keep>" + replacement.replace("\\", "\\\\"), text)
        else:
            text = pattern.sub(replacement, text)
    return text


class SecretMask(logging.Filter):
    """Masks secret shapes (:func:`mask_secrets`) in a record's message, string fields and
    traceback before any formatter sees it; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; always keep it."""
        if getattr(record, "_paygate_masked", False):
            return True
        record.msg = mask_secrets(record.getMessage())
        record.args = None
        for name in FIELDS:
            value = record.__dict__.get(name)
            if isinstance(value, str):
                record.__dict__[name] = mask_secrets(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        record._paygate_masked = True
        return True


class RequestIdFilter(logging.Filter):
    """Gives a record logged while a request is answered that request's id (``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``request_id`` where the record has none; always keep it."""
        if record.__dict__.get("request_id") is None:
            current = request_id.get()
            if current is not None:
                record.request_id = current
        return True


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is written (not when configured)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    found: dict[str, object] = {}
    for name in FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            found[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 with the UTC offset), ``level``,
    ``logger``, ``message``, the record's :data:`FIELDS`, and ``trace`` (an exception's)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["trace"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _text(value: object) -> str:
    if isinstance(value, str) and (not value or any(c in value for c in ' "=\n')):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message field=value ...``, the trace on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as text."""
        fields = " ".join(f"{name}={_text(value)}" for name, value in _fields(record).items())
        text = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if fields:
            text += " " + fields
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def logging_config(level: LogLevel = "info", fmt: LogFormat = "text") -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` dictionary: paygate's and uvicorn's loggers at
    ``level``, written to stderr in ``fmt``, through :class:`RequestIdFilter` and
    :class:`SecretMask`."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    upper = level.upper()
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler = {
        "()": f"{__name__}.StderrHandler",
        "formatter": "paygate",
        "filters": ["request_id", "secrets"],
    }
    # One handler, on the root: paygate's and uvicorn's records reach it by propagation (as
    # they reach any other handler a program adds to the root); other libraries' records
    # below warning stop at the root's level.
    logger = {"handlers": [], "level": upper, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": f"{__name__}.RequestIdFilter"},
            "secrets": {"()": f"{__name__}.SecretMask"},
        },
        "formatters": {"paygate": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"paygate": handler},
        "loggers": {
            "paygate": dict(logger),
            "uvicorn": dict(logger),
            "uvicorn.error": dict(logger),
            "uvicorn.access": dict(logger),
        },
        "root": {"handlers": ["paygate"], "level": "WARNING"},
    }


class _Configured(Protocol):
    @property
    def level(self) -> LogLevel: ...

    @property
    def format(self) -> LogFormat: ...


def log_options(
    level: str | None, fmt: str | None, configured: _Configured
) -> tuple[LogLevel, LogFormat]:
    """The log level and format in effect: a command's ``--log-level`` and ``--log-format``
    (None: not given) over the configuration's ``[log]`` (``configured``); a flag's value that
    is not one of the choices is refused (ConfigurationError naming the flag)."""
    chosen_level = configured.level if level is None else level.lower()
    chosen_format = configured.format if fmt is None else fmt.lower()
    for found, choices, flag in (
        (chosen_level, LOG_LEVELS, "--log-level"),
        (chosen_format, LOG_FORMATS, "--log-format"),
    ):
        if found not in choices:
            raise ConfigurationError(
                f"{flag} {found}: must be one of {', '.join(choices)}", field=flag
            )
    return cast(LogLevel, chosen_level), cast(LogFormat, chosen_format)


def configure_logging(level: LogLevel = "info", fmt: LogFormat = "text") -> None:
    """Send this process's logs (paygate's, uvicorn's, and warnings of any other library) to
    stderr at ``level`` in ``fmt`` (:func:`logging_config`)."""
    logging.config.dictConfig(logging_config(level, fmt))
