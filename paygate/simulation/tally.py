"""What the channels did in a run, counted as it goes, for the report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["Tally"]


@dataclass
class Tally:
    """What the channels did, for the report."""

    payments: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    amounts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused_genuine: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    replays: int = 0
    forged: int = 0
    forged_posted: int = 0
    guesses: int = 0
    guesses_posted: int = 0
    faults: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    bank_files: int = 0
    bank_files_refused: int = 0
    reversals: int = 0
    pos_voided: int = 0
    """POS sales voided in their open batch."""
    pos_unanswered_voided: int = 0
    """POS sales the terminal voided because it heard no answer (the gateway died)."""
    pos_mismatched: int = 0
    """POS batch settlements paygate answered as a mismatch."""
    over_http: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Payments that reached paygate over real HTTP, per channel."""
    kiosk_stored: int = 0
    """Payments the HTTP kiosk took without a confirmation: stored, forwarded later."""
    kiosk_replayed: int = 0
    """Of those, confirmed by a replay (the gateway had posted it and died unanswered)."""
    redemptions: int = 0
    """Cards customers redeemed at the HTTP kiosk."""
    redemptions_unanswered: int = 0
    """Card redemptions at the HTTP kiosk that got no answer (the customer tried again)."""
