"""The coordinator workspace: home queues, lead list, search, lead detail and actions.

``queues`` holds the home page, list and search; ``detail`` the lead page, reveals and
card images; ``actions`` every change. All of them reach a lead through
:func:`get_lead_or_404`, so an unknown or foreign id answers 404 the same way everywhere.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from .. import metrics
from ..access import deny
from ..forms.leads import code_label, language_name
from ..labels import shown
from ..models import Lead, Role, db
from .present import UNREADABLE

bp = Blueprint("leads", __name__, url_prefix="/leads")
#: Roles that read aggregates only: every workspace page shows PHI, so they get none of it.
NO_PHI_ROLES = frozenset({Role.MANAGER})


@bp.before_request
def refuse_roles_without_phi() -> Response | None:
    """Send a manager from the home page to Reports; refuse (403, audited) every other workspace page."""
    if current_user.is_authenticated and current_user.role in NO_PHI_ROLES:
        if request.endpoint == "leads.home" and request.method == "GET":
            return redirect(url_for("reports.index"))
        deny("no_phi_access")
    return None


def get_lead_or_404(lead_id: uuid.UUID | str, *, for_update: bool = False) -> Lead:
    """Load a lead by id (locking its row for a change), or answer 404.

    :raise 404: when no lead has that id, whatever kind of id it is.
    :raise 302: to the survivor when the lead was merged into another.
    """
    lead = db.session.get(Lead, str(lead_id), with_for_update=for_update)
    if lead is None or lead.key is None:
        abort(404)
    if lead.merged_into_id:  # a merged lead's address leads to the record that absorbed it
        abort(redirect(url_for("leads.detail", lead_id=lead.merged_into_id)))
    return lead


@bp.app_template_filter("codelabel")
def codelabel_filter(code: str | None) -> str:
    """Show a stored code as words."""
    return code_label(code) if code else ""


@bp.app_template_filter("words")
def words_filter(value: object) -> str:
    """Show a stored value as words: yes/no for booleans, labels for codes."""
    return shown(value)


@bp.app_template_global("speed_to_lead")
def speed_to_lead_global(lead: Lead):
    """The one definition of speed to lead (:mod:`crm.metrics`), for templates."""
    return metrics.lead_speed_to_lead(lead)


@bp.app_template_filter("language_name")
def language_name_filter(code: str | None) -> str:
    """Show a language code as the language's name."""
    return language_name(code)


@bp.app_template_test("unreadable")
def is_unreadable(value: object) -> bool:
    """True for a field that failed to decrypt."""
    return value is UNREADABLE


from . import actions, appointments, detail, intake, privacy, queues, records  # noqa: E402,F401  (views register on bp)
