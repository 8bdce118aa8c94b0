"""The HTTP routes, one module per resource, each an ``APIRouter`` the app factory includes.

A route whose part is not configured is not included (nor in the OpenAPI document): vouchers
need the voucher channel, POS the POS channel, notify at least one notify channel, the
head-end callback its secret. Routes get the running worker's Gateway and adapters as a
dependency (:mod:`paygate.api.deps`) and read and change the ledger only through them.
"""
