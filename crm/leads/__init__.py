"""The coordinator workspace: home queues, lead list, search, lead detail and actions.

``queues`` holds the home page, list and search; ``detail`` the lead page, reveals and
card images; ``actions`` every change. All of them reach a lead through
:func:`get_lead_or_404`, so an unknown or foreign id answers 404 the same way everywhere.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort

from ..forms.leads import code_label
from ..models import Lead, db
from .present import UNREADABLE

bp = Blueprint("leads", __name__, url_prefix="/leads")


def get_lead_or_404(lead_id: uuid.UUID | str, *, for_update: bool = False) -> Lead:
    """Load a lead by id (locking its row for a change), or answer 404.

    :raise 404: when no lead has that id, whatever kind of id it is.
    """
    lead = db.session.get(Lead, str(lead_id), with_for_update=for_update)
    if lead is None or lead.key is None:
        abort(404)
    return lead


@bp.app_template_filter("codelabel")
def codelabel_filter(code: str | None) -> str:
    """Show a stored code as words."""
    return code_label(code) if code else ""


@bp.app_template_test("unreadable")
def is_unreadable(value: object) -> bool:
    """True for a field that failed to decrypt."""
    return value is UNREADABLE


from . import actions, appointments, detail, privacy, queues  # noqa: E402,F401  (views register on bp)
