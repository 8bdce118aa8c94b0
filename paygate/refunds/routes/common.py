"""What the HTTP refund routes share: one httpx client per route, the translation of what
cannot be known into :class:`~paygate.refunds.route.RefundRouteUnavailable`, and the
provider-facing names of amounts and times.

Invariant: a route returns an outcome only from an answer whose signature verified against
the provider's configured key. Anything else, a network failure, a timeout, a 5xx, an
unsigned, forged or unreadable answer, raises ``RefundRouteUnavailable``: nothing is known
about the refund, and the order is asked about again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import httpx

from paygate.refunds.route import RefundRouteUnavailable

__all__ = ["BEIJING", "HttpRoute", "beijing_time"]

BEIJING: Final = ZoneInfo("Asia/Shanghai")

_log = logging.getLogger("paygate.refunds.routes")


def beijing_time(instant: datetime, fmt: str) -> str:
    """``instant`` (aware) in Beijing time, written with ``fmt``: how the providers write times."""
    return instant.astimezone(BEIJING).strftime(fmt)


class HttpRoute:
    """An httpx client to one provider: base URL, timeout, and the one place failures are
    translated. ``transport`` is for tests that need none of the network."""

    name: str

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "paygate-refunds"},
        )

    def close(self) -> None:
        """Close the route's connections."""
        self._http.close()

    def _send(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        refund_id: str,
    ) -> httpx.Response:
        """One request; a network failure, a timeout or a 5xx is ``RefundRouteUnavailable``."""
        try:
            response = self._http.request(method, url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            _log.warning("%s: refund %s: timed out (%s)", self.name, refund_id, type(exc).__name__)
            raise RefundRouteUnavailable(f"{self.name}: timed out") from exc
        except httpx.TransportError as exc:
            _log.warning("%s: refund %s: not reached (%s)", self.name, refund_id, exc)
            raise RefundRouteUnavailable(f"{self.name}: not reached: {exc}") from exc
        if response.status_code >= 500:
            _log.warning("%s: refund %s: HTTP %d", self.name, refund_id, response.status_code)
            raise RefundRouteUnavailable(f"{self.name}: HTTP {response.status_code}")
        return response

    def _unbelieved(self, refund_id: str, why: str) -> RefundRouteUnavailable:
        """An answer that is not believed: logged as an error, and nothing is concluded."""
        _log.error("%s: refund %s: answer not believed: %s", self.name, refund_id, why)
        return RefundRouteUnavailable(f"{self.name}: answer not believed: {why}")
