"""The HTTP tests' world holds on any day the real clock shows.

Their server, kiosk client and world run on the system clock, so a date fixed in what they
share (a bill's due date, a card's expiry, a certificate's end) passes until that day comes
and fails from then on. Here the whole process is moved to days far from the one the suite was
written on, and the world's kiosk still clears what its bill says and redeems a card.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path

import pytest
import time_machine
from pydantic import SecretBytes

from paygate.api import ApiConfig
from paygate.channels.signing import load_verifying_key
from paygate.channels.voucher import VoucherConfig
from paygate.money import Money
from paygate.vouchers import VoucherService
from tests.api.support import ACCOUNT, BILL, client, live_server, open_world
from tests.channels import support
from tests.databases import fresh_sqlite_url

PIN_KEY = SecretBytes(bytes(range(40, 72)))

DAYS = {
    # Years after the world's dates were written: a due date or expiry fixed then has passed.
    "far-ahead": (datetime(2041, 3, 1, 4, 0, tzinfo=UTC), date(2041, 3, 1)),
    # 01:30 on New Year's Day in Shanghai, still New Year's Eve in UTC.
    "shanghai-new-year": (datetime(2027, 12, 31, 17, 30, tzinfo=UTC), date(2028, 1, 1)),
}


@pytest.mark.parametrize(("instant", "shanghai_day"), DAYS.values(), ids=DAYS.keys())
def test_the_kiosk_clears_its_bill_and_redeems_a_card_whatever_the_day(
    instant: datetime, shanghai_day: date, tmp_path: Path
) -> None:
    url = fresh_sqlite_url(tmp_path)
    with time_machine.travel(instant, tick=True):
        assert abs((datetime.now(UTC) - instant).total_seconds()) < 60
        world = open_world(url)
        try:
            world.customer()
            key = world.register("K0001")
            cards = VoucherService(world.gateway, PIN_KEY)
            printed = BytesIO()
            issued = cards.issue_batch("B1", 1, Money(5000, "CNY"), world.days_ahead(365), printed)
            cards.activate("B1", retailer="Shop 1")
            pin = printed.getvalue().decode().splitlines()[1].split(",")[2]
            config = ApiConfig(channels={"voucher": VoucherConfig()}, voucher_pin_key=PIN_KEY)
            with live_server(url, config) as server, client(server, "K0001", key) as kiosk:
                paid = kiosk.pay(ACCOUNT, BILL)
                redeemed = kiosk.redeem_voucher(ACCOUNT, issued.first_serial, pin)
        finally:
            world.gateway.close()
        certificate = support.certificate_pem(support.rsa_key("wechat"), 1)
        still_valid = load_verifying_key(certificate).valid_at(datetime.now(UTC))
    assert paid.business_date == shanghai_day
    assert (paid.amount, paid.late_fee, paid.arrears_after, paid.balance_after) == (
        BILL,
        Money(0, "CNY"),
        Money(0, "CNY"),
        Money(0, "CNY"),
    )
    assert redeemed.result == "redeemed"
    assert redeemed.receipt.balance_after == Money(-5000, "CNY")
    assert still_valid
