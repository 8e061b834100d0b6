"""New leads from calls and referrals: the form, the possible-match screen, adding a call to a match."""

from __future__ import annotations

import uuid

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..forms import show_refusal
from ..forms.intake import NewLeadForm
from ..forms.leads import ConfirmForm
from ..forms.public import contact_consent_wording
from ..models import Lead, db, utcnow
from ..operations import intake as ops_intake
from ..operations import leads as ops
from . import bp, get_lead_or_404
from .actions import perform
from .present import Reader, lead_row
from .queries import staff_directory


@bp.route("/new", methods=["GET", "POST"])
def new_lead():
    """Record a lead from a call, referral, VA Community Care or walk-in; show possible matches first."""
    form = NewLeadForm()
    matches: list[Lead] = []
    if form.validate_on_submit():
        matches = ops_intake.possible_matches(_identity(form))
        if not matches or form.checked.data and form.duplicate_reason.data:
            try:
                return _create(form, matches)
            except ValueError as exc:  # refused by a rule: the form comes back with everything typed
                db.session.rollback()
                show_refusal(form, exc)
        if form.checked.data:
            form.duplicate_reason.errors = ["Give a reason to create a new lead although these may be the same person."]
        form.checked.data = "1"
    return _render(form, matches)


def _identity(form: NewLeadForm) -> ops_intake.Identity:
    return ops_intake.Identity(form.last_name.data, form.dob.data, form.phone.data or None, form.email.data or None)


def _create(form: NewLeadForm, matches: list[Lead]):
    data = ops_intake.StaffLead(
        source=form.source.data, values=form.lead_values(), source_details=form.source_details(),
        verbal_consent=bool(form.verbal_consent.data), note=form.note.data or None,
        duplicate_reason=form.duplicate_reason.data or None, matches=[lead.id for lead in matches])
    lead = ops_intake.create_staff_lead(current_user, data)
    db.session.commit()
    flash(_("Lead created."), "success")
    return redirect(url_for("leads.detail", lead_id=lead.id))


def _render(form: NewLeadForm, matches: list[Lead]) -> str:
    """The form, and the masked possible matches (the listing is audited)."""
    reader, users, now = Reader(), staff_directory(), utcnow()
    rows = [lead_row(lead, reader, users, now) for lead in matches]
    if rows:
        ops.record_listing(current_user, "possible_matches", [row.id for row in rows])
    for lead_id, fields in reader.failed.items():
        ops.record_unreadable(lead_id, current_user, fields)
    db.session.commit()
    return render_template("leads/new.html", form=form, matches=rows, consent_wording=contact_consent_wording())


@bp.post("/<uuid:lead_id>/calls")
def add_call(lead_id: uuid.UUID):
    """Add the call being taken to an existing lead the match check found."""
    lead = get_lead_or_404(lead_id, for_update=True)
    note = (request.form.get("note") or "").strip()[:2000] or None
    consent = request.form.get("verbal_consent") == "y"
    return perform(lead, ConfirmForm(), "attempt",
                   lambda: ops_intake.add_call(lead, current_user, note, consent),
                   "Call added to this lead.", form_key="confirm")
