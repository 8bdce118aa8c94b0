"""Reconciliation: channel settlement statements and bank statements against the ledger."""
