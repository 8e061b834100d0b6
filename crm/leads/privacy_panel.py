"""What the lead page's privacy block shows, and the page an erased lead gets instead.

Kept apart from the views in ``privacy`` so the lead page (``detail``) can build the block
without importing the views that themselves re-render the lead page.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from ..forms.privacy import DoNotContactForm, EraseForm
from ..models import Insurance, Lead, LeadEvent, Role, db
from ..operations import leads as ops
from ..operations import privacy
from . import present, queries


def privacy_view(lead: Lead) -> dict[str, Any]:
    """The privacy block's facts: do-not-contact, list matches, legal hold, access request, erasure."""
    users = queries.staff_directory()
    refusal = privacy.erasure_refusal(lead)
    return {
        "is_admin": current_user.role == Role.ADMIN,
        "dnc_by": present.staff_name(users.get(lead.do_not_contact_by)),
        "dnc_match": None if lead.is_do_not_contact else privacy.lead_do_not_contact_match(lead),
        "hold_by": present.staff_name(users.get(lead.legal_hold_by)),
        "erase_refusal": privacy.REFUSALS[refusal] if refusal else None,
    }


def privacy_forms(lead: Lead) -> dict[str, FlaskForm]:
    """Fresh privacy forms for the lead page."""
    return {"dnc": DoNotContactForm(formdata=None),
            "erase": EraseForm(formdata=None, next=url_for("leads.detail", lead_id=lead.id, _anchor="privacy"))}


def render_tombstone(lead: Lead) -> str:
    """The page of an erased lead: when and by whom, and the non-PHI facts kept for reports (audited)."""
    users = queries.staff_directory()
    events = db.session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead.id, LeadEvent.to_stage.is_not(None))
                                .order_by(LeadEvent.at))
    coverage = db.session.scalars(select(Insurance.coverage_type).where(Insurance.lead_id == lead.id))
    html = render_template(
        "leads/erased.html", lead=lead, stage_events=list(events), coverage=sorted(set(coverage)),
        erased_by=present.staff_name(users.get(lead.erased_by)) if lead.erased_by else "the system",
    )
    ops.record("lead_viewed", lead.id, current_user, {"tombstone": True})
    db.session.commit()
    return html
