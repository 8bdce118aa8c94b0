"""Hypothesis strategies for channel input, shared by the property tests."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

# Field names and values in the shapes channels send, plus hostile ones.
_names = st.sampled_from(
    [
        "sign",
        "sign_type",
        "charset",
        "encoding",
        "notify_type",
        "trade_status",
        "trade_no",
        "total_amount",
        "passback_params",
        "gmt_payment",
        "version",
        "signMethod",
        "signature",
        "txnType",
        "txnAmt",
        "orderId",
        "queryId",
        "merId",
        "respCode",
    ]
) | st.text(min_size=0, max_size=12)
_values = st.sampled_from(
    ["RSA2", "utf-8", "GBK", "trade_status_sync", "TRADE_SUCCESS", "5.1.0", "01", "00", "0.10"]
) | st.text(max_size=40)


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    """Form-encoded bodies, mostly well-formed, sometimes with raw and broken bytes."""
    pairs = draw(st.lists(st.tuples(_names, _values), max_size=12))
    text = "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        return text
    noise = draw(st.binary(max_size=40))
    at = draw(st.integers(min_value=0, max_value=len(text)))
    return text[:at] + noise + text[at:]


bodies = st.one_of(st.binary(max_size=512), form_bodies(), st.text(max_size=200).map(str.encode))
"""Any request body."""

header_names = st.sampled_from(
    [
        "Wechatpay-Serial",
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "wechatpay-serial",
        "X-Fake-Signature",
        "Content-Type",
    ]
) | st.text(min_size=1, max_size=20)

headers = st.dictionaries(header_names, st.text(max_size=60), max_size=6)
"""Any request headers."""


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes changed, inserted or removed (never ``original`` itself)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(min_value=1, max_value=255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at]
    # An insertion and a deletion at one place can cancel out.
    assume(bytes(data) != original)
    return bytes(data)
