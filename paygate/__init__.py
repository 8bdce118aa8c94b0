"""paygate: every payment channel into one double-entry ledger, reconciled, with reconnection."""
