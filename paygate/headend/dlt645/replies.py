"""Replies: normal and abnormal, the meter's error flags, and the errors a reply that does
not answer the request raises."""

from __future__ import annotations

from enum import IntFlag
from typing import Final

from paygate.headend.dlt645.codec import ControlCode, Dlt645Error, Frame, FrameError, MeterAddress


class UnexpectedReplyError(Dlt645Error):
    """A well-formed frame that is not the answer to the request that was sent."""

    code = "dlt645_unexpected_reply"

    def __init__(self, message: str, *, reply: Frame) -> None:
        super().__init__(message, field="reply")
        self.reply = reply


class MeterRefusedError(Dlt645Error):
    """The meter answered with an abnormal reply (D6 = 1); ``reasons`` holds its error flags."""

    code = "dlt645_meter_refused"

    def __init__(
        self,
        message: str,
        *,
        address: MeterAddress,
        function: int,
        reasons: MeterErrorFlag,
    ) -> None:
        super().__init__(message, field="reply")
        self.address = address
        self.function = function
        self.reasons = reasons


# ── replies and their error flags ────────────────────────────────────────────────────────────


class MeterErrorFlag(IntFlag):
    """The error information byte ERR of an abnormal reply (错误信息字).

    The standard defines one ERR byte for every abnormal reply, remote control (DCH) included.
    It has no flag of its own for a remote-control command that arrives after its expiry, for
    a trip refused because the meter is protected (保电), or for a meter clock error: meters
    report those as :attr:`OTHER`.
    """

    OTHER = 0x01  # 其他错误
    NO_REQUESTED_DATA = 0x02  # 无请求数据
    UNAUTHORISED = 0x04  # 密码错/未授权
    BAUD_RATE_UNCHANGEABLE = 0x08  # 通信速率不能更改
    TOO_MANY_YEAR_ZONES = 0x10  # 年时区数超
    TOO_MANY_DAY_SLOTS = 0x20  # 日时段数超
    TOO_MANY_TARIFFS = 0x40  # 费率数超
    RESERVED = 0x80  # 保留

    @property
    def description(self) -> str:
        """The reasons in words, English then the standard's Chinese term."""
        if not self:
            return "no reason given"
        return ", ".join(_ERROR_WORDS[flag] for flag in self)


_ERROR_WORDS: Final = {
    MeterErrorFlag.OTHER: "other error (其他错误)",
    MeterErrorFlag.NO_REQUESTED_DATA: "no requested data (无请求数据)",
    MeterErrorFlag.UNAUTHORISED: "wrong password or unauthorised (密码错/未授权)",
    MeterErrorFlag.BAUD_RATE_UNCHANGEABLE: "baud rate cannot be changed (通信速率不能更改)",
    MeterErrorFlag.TOO_MANY_YEAR_ZONES: "too many year time zones (年时区数超)",
    MeterErrorFlag.TOO_MANY_DAY_SLOTS: "too many daily time slots (日时段数超)",
    MeterErrorFlag.TOO_MANY_TARIFFS: "too many tariffs (费率数超)",
    MeterErrorFlag.RESERVED: "reserved bit 7 (保留)",
}


def normal_reply(
    request: Frame, data: bytes = b"", *, address: MeterAddress | None = None
) -> Frame:
    """The meter's normal reply to ``request`` (D7 = 1), from ``address`` if not the request's.

    A meter answers a wildcard request with its own full address, hence ``address``.
    """
    control = ControlCode(function=request.control.function, reply=True)
    return Frame(address=address or request.address, control=control, data=data)


def abnormal_reply(
    request: Frame, errors: MeterErrorFlag, *, address: MeterAddress | None = None
) -> Frame:
    """The meter's abnormal reply to ``request`` (D7 = D6 = 1) carrying the ERR byte."""
    control = ControlCode(function=request.control.function, reply=True, abnormal=True)
    return Frame(address=address or request.address, control=control, data=bytes((int(errors),)))


def _error_flags(reply: Frame) -> MeterErrorFlag:
    if len(reply.data) != 1:
        raise FrameError(
            f"an abnormal reply carries one error byte, got {len(reply.data)} bytes",
            part="data",
        )
    return MeterErrorFlag(reply.data[0])
