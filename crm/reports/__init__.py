"""Reports blueprint: funnel, speed to lead, sources, payers, coordinators and the trend, as charts and tables.

Only aggregates of plain workflow columns reach these pages (no name, contact detail, carrier
as typed or free text). Admins and managers see every lead's figures; coordinators see the
same figures for their own leads; anyone else is refused before a view runs.
"""

from __future__ import annotations

from flask import Blueprint

from ..access import require_role
from ..models import Role

bp = Blueprint("reports", __name__, url_prefix="/reports")

#: Roles that may open reports; coordinators are scoped to their own leads.
REPORT_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.COORDINATOR})


@bp.before_request
def require_report_role() -> None:
    """Refuse (403, audited) every report endpoint to a role that reads no reports."""
    require_role(*REPORT_ROLES, reason="reports_role")


from . import views  # noqa: E402,F401  (views register on bp)
