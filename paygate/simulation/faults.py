"""Fault profiles: how often each fault the simulation can inject happens.

A profile is named (``none``, ``default``, ``harsh``) or read from a TOML file whose keys are
the fields of :class:`FaultProfile` (a file may start from a named profile with
``base = "harsh"``). Rates are per event of the kind the field names (a share of payments,
of dispatcher passes, of days …); durations are minutes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paygate.errors import ConfigurationError

__all__ = ["PROFILES", "FaultProfile", "load_profile"]

_Rate = Field(default=0.0, ge=0.0, le=1.0)


class FaultProfile(BaseModel):
    """How often each fault happens (0 turns it off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    # channels
    duplicate_notify: float = _Rate
    """Share of payment messages the channel sends twice (its answer was lost)."""
    late_notify: float = _Rate
    """Share of payment messages held back by the channel and delivered hours later."""
    out_of_order: float = _Rate
    """Share of the hourly late deliveries that arrive shuffled rather than in sending order."""
    lost_notify: float = _Rate
    """Share of wallet and online payments whose notification never arrives: the money
    appears only in the channel's statement (an injected statement difference)."""
    forged_per_day: int = Field(default=0, ge=0, le=1_000)
    """Impostor messages a day, spread over the channels."""
    kiosk_offline_per_day: float = _Rate
    """Chance a day that the kiosk loses its link for a spell and stores its payments."""
    kiosk_offline_minutes: int = Field(default=120, ge=10, le=24 * 60)
    bad_trailer: float = _Rate
    """Chance that the agent bank's daily file has a wrong trailer (sent again corrected)."""
    reversal: float = _Rate
    """Share of wallet payments later reported fraudulent and reversed."""
    pos_void: float = _Rate
    """Share of POS sales the cashier voids at once (keyed to the wrong amount) and keys
    again."""
    brute_force_per_day: int = Field(default=0, ge=0, le=10_000)
    """Voucher PIN guesses a day from an attacker."""
    statement_difference: float = _Rate
    """Share of statement lines carrying an injected difference (amount, duplicate line,
    unknown account)."""
    negotiated_cut: float = _Rate
    """Chance a morning that a supervisor negotiates the disconnection of a protected account
    in arrears (大客户停电协商) and approves it."""
    # head-end and dispatcher
    headend_outage_per_day: float = Field(default=0.0, ge=0.0, le=24.0)
    """Head-end outages starting per day (expected)."""
    headend_outage_minutes: int = Field(default=60, ge=10, le=7 * 24 * 60)
    """Longest outage; each lasts between a third of this and all of it."""
    headend_slow: float = _Rate
    """Share of commands the meter confirms only hours later."""
    headend_reject: float = _Rate
    """Share of commands the head-end refuses for good (an operator retries them)."""
    duplicate_callback: float = _Rate
    """Share of completions the head-end calls back twice."""
    dispatcher_crash: float = _Rate
    """Chance per dispatcher pass that the dispatcher dies mid-order and is restarted."""
    gateway_crash: float = _Rate
    """Share of payment messages during which the gateway dies and is restarted."""


PROFILES: Final[dict[str, FaultProfile]] = {
    "none": FaultProfile(name="none"),
    "default": FaultProfile(
        name="default",
        duplicate_notify=0.03,
        late_notify=0.02,
        out_of_order=0.5,
        lost_notify=0.002,
        forged_per_day=6,
        kiosk_offline_per_day=0.2,
        kiosk_offline_minutes=180,
        bad_trailer=0.1,
        reversal=0.002,
        pos_void=0.01,
        brute_force_per_day=20,
        statement_difference=0.002,
        negotiated_cut=0.3,
        headend_outage_per_day=0.3,
        headend_outage_minutes=180,
        headend_slow=0.02,
        headend_reject=0.002,
        duplicate_callback=0.05,
        dispatcher_crash=0.002,
        gateway_crash=0.001,
    ),
    "harsh": FaultProfile(
        name="harsh",
        duplicate_notify=0.1,
        late_notify=0.08,
        out_of_order=0.8,
        lost_notify=0.01,
        forged_per_day=40,
        kiosk_offline_per_day=0.6,
        kiosk_offline_minutes=600,
        bad_trailer=0.4,
        reversal=0.01,
        pos_void=0.05,
        brute_force_per_day=200,
        statement_difference=0.01,
        negotiated_cut=0.8,
        headend_outage_per_day=1.5,
        headend_outage_minutes=16 * 60,
        headend_slow=0.1,
        headend_reject=0.02,
        duplicate_callback=0.2,
        dispatcher_crash=0.02,
        gateway_crash=0.005,
    ),
}
"""The named profiles: ``none`` (a calm month), ``default`` (what a utility sees), ``harsh``."""


def load_profile(spec: str) -> FaultProfile:
    """A named profile, or the TOML file at ``spec`` (fields of :class:`FaultProfile`)."""
    if spec in PROFILES:
        return PROFILES[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigurationError(
            f"no fault profile {spec!r}: name one of {', '.join(PROFILES)} or a TOML file",
            field="faults",
        )
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not TOML: {exc}", field="faults") from exc
    base = data.pop("base", "none")
    if base not in PROFILES:
        raise ConfigurationError(f"{path}: base {base!r} is not a named profile", field="base")
    try:
        return FaultProfile.model_validate(
            {**PROFILES[base].model_dump(), "name": path.stem, **data}
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ConfigurationError(f"{path}: {where}: {problem['msg']}", field=where) from None
