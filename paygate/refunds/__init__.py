"""Refunds (退费) and account closure (销户).

A refund moves a customer's credit to the refunds-payable account and raises a refund order;
the order goes to its *route* (:mod:`paygate.refunds.route`), which speaks the provider's own
refund API. The order completes, or fails and returns the money to the customer's credit.

:mod:`~paygate.refunds.service` decides refunds, :mod:`~paygate.refunds.dispatch` sends the
orders through their routes, :mod:`~paygate.refunds.closure` closes accounts and
:mod:`~paygate.refunds.closed` holds what a closed account is still paid. This package imports
nothing on its own: the payment path imports :mod:`~paygate.refunds.closed`, which the
services built on the payment path must not be loaded before. docs/refunds.md tells the rest.
"""
