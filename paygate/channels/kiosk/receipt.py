"""The kiosk's printable receipt and its lines."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from paygate.channels.kiosk.messages import KioskMethod, method_of
from paygate.channels.wire import shown
from paygate.clock import DEFAULT_TIMEZONE
from paygate.errors import InvalidInputError
from paygate.models import AccountStatus, Allocation, Instant, Receipt, SupplyState
from paygate.money import Money


class KioskReceipt(BaseModel):
    """What the kiosk prints: the core's receipt with the terminal, transaction and method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_id: int
    terminal_id: str
    txn_id: str
    channel_txn_id: str
    method: KioskMethod
    account_no: str
    amount: Money
    paid_at: Instant
    business_date: date
    late_fee: Money
    allocations: tuple[Allocation, ...]
    credit: Money
    balance_after: Money = Field(description="positive = the customer still owes")
    arrears_after: Money
    arrears_cleared: bool
    reconnection_order_id: int | None = None
    replayed: bool = False
    after_close: bool = Field(
        default=False,
        description="the terminal had closed business_date when this was answered: "
        "that close's figures may not include this payment",
    )


def kiosk_receipt(
    receipt: Receipt, terminal_id: str, txn_id: str, *, after_close: bool = False
) -> KioskReceipt:
    """The printable receipt of a payment the core answered."""
    method = method_of(txn_id)
    if method is None:
        raise InvalidInputError(f"not a kiosk transaction id: {shown(txn_id)}", field="txn_id")
    return KioskReceipt(
        payment_id=receipt.payment_id,
        terminal_id=terminal_id,
        txn_id=txn_id,
        channel_txn_id=receipt.channel_txn_id,
        method=method,
        account_no=receipt.account_no,
        amount=receipt.amount,
        paid_at=receipt.paid_at,
        business_date=receipt.business_date,
        late_fee=receipt.late_fee,
        allocations=receipt.allocations,
        credit=receipt.credit,
        balance_after=receipt.balance_after,
        arrears_after=receipt.arrears_after,
        arrears_cleared=receipt.arrears_cleared,
        reconnection_order_id=receipt.reconnection_order_id,
        replayed=receipt.replayed,
        after_close=after_close,
    )


_METHOD_LABELS: Final[Mapping[KioskMethod, str]] = {
    KioskMethod.CASH: "现金 Cash",
    KioskMethod.CARD: "银行卡 Bank card",
}
_SUPPLY_LABELS: Final[Mapping[SupplyState, str]] = {
    SupplyState.CONNECTED: "正常供电 Connected",
    SupplyState.DISCONNECTION_PENDING: "待停电 Disconnection pending",
    SupplyState.DISCONNECTED: "已停电 Disconnected",
    SupplyState.RECONNECTION_PENDING: "复电处理中 Reconnection in progress",
    SupplyState.CLOSED: "已销户 Account closed",
}


def _amount(money: Money) -> str:
    return f"{money.format()} {money.currency}"


def receipt_lines(
    receipt: KioskReceipt | Receipt,
    status: AccountStatus | None = None,
    *,
    timezone: str = DEFAULT_TIMEZONE,
) -> list[str]:
    """The receipt as printable lines with Chinese and English labels.

    Times are shown in ``timezone`` (the utility's). ``status``, when given, adds what the
    account owes and its supply state as of the status date.
    """
    zone = ZoneInfo(timezone)
    lines = ["电费缴费凭证 / ELECTRICITY PAYMENT RECEIPT"]
    if receipt.replayed:
        lines.append("重复请求，原交易凭证 / DUPLICATE of the original payment")
    if isinstance(receipt, KioskReceipt):
        lines += [
            f"终端 Terminal: {receipt.terminal_id}",
            f"终端流水 Transaction: {receipt.txn_id}",
            f"支付方式 Method: {_METHOD_LABELS[receipt.method]}",
        ]
    local = receipt.paid_at.astimezone(zone)
    lines += [
        f"户号 Account: {receipt.account_no}",
        f"缴费时间 Paid at: {local:%Y-%m-%d %H:%M:%S}",
        f"账务日期 Business date: {receipt.business_date.isoformat()}",
        f"缴费金额 Amount paid: {_amount(receipt.amount)}",
    ]
    if receipt.late_fee.minor:
        lines.append(f"违约金 Late fee charged: {_amount(receipt.late_fee)}")
    for allocation in receipt.allocations:
        lines.append(
            f"  账单 Bill {allocation.bill_no}: 电费 principal {allocation.principal.format()}, "
            f"违约金 late fee {allocation.late_fee.format()}"
        )
    if receipt.credit.minor:
        lines.append(f"预存 Credit kept: {_amount(receipt.credit)}")
    if receipt.balance_after.minor > 0:
        lines.append(f"尚欠 Still owed: {_amount(receipt.balance_after)}")
    else:
        lines.append(f"账户余额 Account credit: {_amount(-receipt.balance_after)}")
    lines.append(f"欠费 Arrears after payment: {_amount(receipt.arrears_after)}")
    if receipt.reconnection_order_id is not None:
        lines += [
            f"复电工单 Reconnection order: {receipt.reconnection_order_id}",
            "欠费已结清，将在承诺时限内恢复供电 / Arrears cleared: supply will be restored "
            "within the service promise",
        ]
    elif receipt.arrears_cleared:
        lines.append("欠费已结清 / Arrears cleared")
    lines.append(f"交易号 Payment id: {receipt.payment_id}")
    if status is not None:
        lines += [
            f"账户状态 Account status as of {status.as_of.isoformat()}:",
            f"  欠费 Arrears: {_amount(status.arrears)}",
            f"  未缴电费 Outstanding: {_amount(status.outstanding)}",
            f"  供电状态 Supply: {_SUPPLY_LABELS[status.supply_state]}",
        ]
    return lines
