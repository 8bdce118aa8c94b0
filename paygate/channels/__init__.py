"""Channel adapters: each payment channel's messages, signatures, statements and settlement.

The protocol and registry live in :mod:`paygate.channels.base`; one module per channel family
(:mod:`~paygate.channels.mobile`, :mod:`~paygate.channels.online`) holds its adapters.
Importing this package loads no adapter: :meth:`ChannelRegistry.with_builtins` and
:meth:`ChannelRegistry.discover` import them when asked.
"""

from paygate.channels.base import (
    BUILTIN_CHANNELS,
    ENTRY_POINT_GROUP,
    OPERATION_METHODS,
    AdapterContext,
    ChannelAdapter,
    ChannelConfig,
    ChannelRegistry,
    FeeSchedule,
    InMemoryNonceStore,
    NonceStore,
    NotifyResult,
    Operation,
    PaymentSink,
    SettlementRules,
    StatementSource,
    unsupported,
)
from paygate.channels.orders import InMemoryOrderStore, Order, OrderStore

__all__ = [
    "BUILTIN_CHANNELS",
    "ENTRY_POINT_GROUP",
    "OPERATION_METHODS",
    "AdapterContext",
    "ChannelAdapter",
    "ChannelConfig",
    "ChannelRegistry",
    "FeeSchedule",
    "InMemoryNonceStore",
    "InMemoryOrderStore",
    "NonceStore",
    "NotifyResult",
    "Operation",
    "Order",
    "OrderStore",
    "PaymentSink",
    "SettlementRules",
    "StatementSource",
    "unsupported",
]
