"""paygate's Alembic environment, installed as ``paygate._migrations``.

In the source tree it is the top-level ``migrations/`` directory; the wheel ships it inside the
package (see pyproject.toml), where :mod:`paygate.store.migrate` finds it.
"""
