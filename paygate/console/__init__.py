"""The service centre's console (一口对外): staff sign in and see, and act on, an account's
whole story at ``/console`` of ``paygate serve``.

Server-side pages (Jinja2) with a little htmx, every asset in the package; Chinese first,
English second (:mod:`paygate.console.i18n`). Staff, sessions and lockout are
:mod:`paygate.console.staff`; roles, CSRF and cookies :mod:`paygate.console.auth`; what
each page reads :mod:`paygate.console.views`; every action goes to the audit trail
(:mod:`paygate.console.audit`). See docs/console.md.
"""

from __future__ import annotations

from paygate.console.auth import ConsoleSettings, Permission
from paygate.console.routes import mount
from paygate.console.staff import Role, StaffPolicy, StaffRegistry

__all__ = ["ConsoleSettings", "Permission", "Role", "StaffPolicy", "StaffRegistry", "mount"]
