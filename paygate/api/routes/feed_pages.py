"""What the feed routes share: reading ``after`` and ``limit`` once the caller is known."""

from __future__ import annotations

from fastapi import Request

from paygate.api.bearer import query_values
from paygate.api.problems import RequestValidationProblem
from paygate.feeds import DEFAULT_PAGE, MAX_PAGE

__all__ = ["page_request"]


def page_request(request: Request) -> tuple[str | None, int]:
    """(``after``, ``limit``) of a feed request; ``limit`` 1 to 1000, default 100."""
    values = query_values(request, "after", "limit")
    text = values["limit"]
    if text is None:
        return values["after"], DEFAULT_PAGE
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_PAGE):
        raise RequestValidationProblem(f"limit must be 1 to {MAX_PAGE}", field="limit")
    return values["after"], int(text)
