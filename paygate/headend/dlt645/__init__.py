"""DL/T 645-2007, the meter protocol: frames, remote control (跳合闸) and a driver that uses them.

Most electricity meters in China speak DL/T 645-2007 over RS-485, infrared, or a concentrator /
GPRS link that passes the same frames through. This module turns a supply order into the
frames a meter obeys and reads back what the meter did.

What it guarantees:

* **Codec.** :func:`decode_frame` accepts exactly one well-formed frame (0-4 wake-up bytes
  ``FE`` allowed before it) and refuses anything else with a :class:`FrameError` whose ``part``
  names what is wrong: wake-up bytes, start byte, address (BCD digit or wildcard), second start
  byte, length, checksum (expected and actual), end byte, trailing bytes. It never raises
  anything else, whatever the bytes. ``decode_frame(encode_frame(f)) == f`` for every
  :class:`Frame`; a single flipped bit anywhere in a frame is always refused.
* **Streams.** :class:`FrameBuffer` hands back every well-formed frame in a byte stream however
  the stream is cut into pieces, skips noise between frames, and holds at most one frame's worth
  of bytes between calls.
* **Attribution.** The driver acts on a reply only if it is a reply (D7 = 1) from the meter that
  was addressed, to the function that was asked (and, for a read, to the data identifier that
  was asked); anything else is refused with :class:`UnexpectedReplyError`.
* **Secrets.** The password and operator code are held as :class:`~pydantic.SecretStr` and never
  appear in a repr, a str, an exception message or a log record; a :class:`Frame` that carries
  them withholds its data from its repr.
* **Outcome.** A reconnection counts as done only when the meter reports its relay closed.
  A close permit (合闸允许) that leaves the relay open for the customer's button is its own
  outcome, :attr:`ReconnectOutcome.AWAITING_CUSTOMER`, never "done".

Errors, under the one paygate hierarchy::

    PaygateError
    ├── ParseError
    │   └── FrameError               bytes that are not one well-formed frame (part named)
    └── Dlt645Error                  the meter could not be driven (catch this around a driver)
        ├── FrameError               the same class: a garbled or malformed reply
        ├── TransportError           the transport failed to carry the request or the reply
        │   └── MeterTimeoutError    no reply within the timeout
        ├── UnexpectedReplyError     a frame that does not answer the request
        └── MeterRefusedError        an abnormal reply; ``reasons`` says why

Wire conventions of DL/T 645-2007: every multi-byte field travels least significant byte
first; the data field travels with 33H added to each byte; the checksum is the sum modulo
256 of every byte from the first 68H through the data.

The package keeps one concept per module, each importing only the ones before it:
:mod:`~paygate.headend.dlt645.codec` (addresses, control codes, frames, streams),
:mod:`~paygate.headend.dlt645.replies` (normal and abnormal replies, error flags),
:mod:`~paygate.headend.dlt645.commands` (remote control, read data, the relay status word) and
:mod:`~paygate.headend.dlt645.driver` (the transport and :class:`Dlt645Meter`). Every public
name is imported from here.
"""

from __future__ import annotations

from paygate.headend.dlt645.codec import (
    BROADCAST_ADDRESS,
    MAX_WAKE_UP_BYTES,
    ControlCode,
    Dlt645Error,
    Frame,
    FrameBuffer,
    FrameError,
    Function,
    MeterAddress,
    decode_frame,
    encode_frame,
)
from paygate.headend.dlt645.commands import (
    RELAY_STATUS_DI,
    MeterCredentials,
    RelayState,
    RelayStatus,
    RemoteControlAction,
    RemoteControlCommand,
    build_read,
    build_remote_control,
    decode_data_identifier,
    encode_data_identifier,
    parse_read_reply,
    parse_read_request,
    parse_remote_control,
)
from paygate.headend.dlt645.driver import (
    Dlt645Meter,
    Dlt645Transport,
    MeterTimeoutError,
    ReconnectMode,
    ReconnectOutcome,
    ReconnectResult,
    TransportError,
)
from paygate.headend.dlt645.replies import (
    MeterErrorFlag,
    MeterRefusedError,
    UnexpectedReplyError,
    abnormal_reply,
    normal_reply,
)

__all__ = [
    "BROADCAST_ADDRESS",
    "MAX_WAKE_UP_BYTES",
    "RELAY_STATUS_DI",
    "ControlCode",
    "Dlt645Error",
    "Dlt645Meter",
    "Dlt645Transport",
    "Frame",
    "FrameBuffer",
    "FrameError",
    "Function",
    "MeterAddress",
    "MeterCredentials",
    "MeterErrorFlag",
    "MeterRefusedError",
    "MeterTimeoutError",
    "ReconnectMode",
    "ReconnectOutcome",
    "ReconnectResult",
    "RelayState",
    "RelayStatus",
    "RemoteControlAction",
    "RemoteControlCommand",
    "TransportError",
    "UnexpectedReplyError",
    "abnormal_reply",
    "build_read",
    "build_remote_control",
    "decode_data_identifier",
    "decode_frame",
    "encode_data_identifier",
    "encode_frame",
    "normal_reply",
    "parse_read_reply",
    "parse_read_request",
    "parse_remote_control",
]
