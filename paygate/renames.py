"""Names paygate retired, and the one word each concept has now (docs/architecture.md, Glossary).

A retired public name keeps working for a deprecation period and says so once per use:

* a retired **channel name** (``prepaid_card``, now ``voucher``) is read as the new one
  wherever a channel is named — a :class:`~paygate.models.PaymentIntent`, the settings,
  configuration files, the registry, the command line — with a warning;
* a retired **Python name** (a module attribute or a module) is an alias of the new object,
  reached through a module ``__getattr__`` (:func:`module_aliases`) that warns with
  :class:`DeprecationWarning`.

Configuration files and command options are read by operators rather than programmers, so
what they name is warned about with :class:`FutureWarning`, which Python shows by default.
Nothing here changes stored data: migration 0006 moves the stored channel name, and the rows
it does not rewrite (the sealed journal) keep the old name, read as an alias of the new.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "RETIRED_CHANNELS",
    "channel_names",
    "current_channel",
    "module_aliases",
]

RETIRED_CHANNELS: Final[Mapping[str, str]] = MappingProxyType({"prepaid_card": "voucher"})
"""Retired channel name -> the channel's name now."""


def current_channel(
    name: str, *, where: str, category: type[Warning] = DeprecationWarning, stacklevel: int = 3
) -> str:
    """``name``, or the channel's current name if ``name`` is retired (with a warning)."""
    new = RETIRED_CHANNELS.get(name)
    if new is None:
        return name
    warnings.warn(
        f"{where}: channel name {name!r} is deprecated; the channel is {new!r}",
        category,
        stacklevel=stacklevel,
    )
    return new


def channel_names(name: str) -> tuple[str, ...]:
    """Every name ``name``'s channel has been stored under: the current one first.

    Rows written before migration 0006 that it does not rewrite (the sealed journal) keep
    the retired name; a reader that matches them looks for both.
    """
    current = RETIRED_CHANNELS.get(name, name)
    return (current, *sorted(old for old, new in RETIRED_CHANNELS.items() if new == current))


def module_aliases(module: str, aliases: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` serving retired names: ``{old: "package.module:new"}``.

    Each access warns (:class:`DeprecationWarning`, naming the new spelling) and returns the
    new object, so ``from module import Old`` keeps working and ``Old is New``.
    """

    def __getattr__(name: str) -> object:
        target = aliases.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, attribute = target.partition(":")
        warnings.warn(
            f"{module}.{name} is deprecated; use {where}.{attribute}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(where), attribute)

    return __getattr__
