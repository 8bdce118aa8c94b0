"""Refunds (退费) and account closure (销户).

A refund moves a customer's credit to the refunds-payable account and raises a refund order;
the order goes to its *route* (:mod:`paygate.refunds.route`), which speaks the provider's own
refund API. The order completes, or fails and returns the money to the customer's credit.
"""
