"""Privacy actions on a lead: do-not-contact, access requests, the patient's copy, legal hold, erasure.

Anyone on staff records a do-not-contact or an access request (patients ask whoever answers
the phone). Only admins download a patient's copy, place a legal hold or erase, and the
copy and the erasure also need a fresh sign-in; erasure needs the reference typed again.
"""

from __future__ import annotations

import uuid

from flask import Response, abort, flash, redirect, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from .. import export
from ..access import fresh_required, role_required
from ..backup import checkpoint_sqlite
from ..forms.leads import ConfirmForm
from ..forms.privacy import DoNotContactForm, EraseForm
from ..models import Lead, Role, db
from ..operations import privacy as ops
from . import bp, get_lead_or_404
from .actions import perform
from .detail import render_detail


def _lead_or_404(lead_id: uuid.UUID, for_update: bool = False) -> Lead:
    """A lead, erased or not (404 only when there is none), for views that explain an erasure."""
    lead = db.session.get(Lead, str(lead_id), with_for_update=for_update)
    if lead is None:
        abort(404)
    return lead


def _back(lead_id: str) -> BaseResponse:
    return redirect(url_for("leads.detail", lead_id=lead_id, _anchor="privacy"))


@bp.post("/<uuid:lead_id>/do-not-contact")
def set_do_not_contact(lead_id: uuid.UUID):
    """Record the patient's request to stop: attempts, callbacks and alerts are blocked from now on."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = DoNotContactForm()
    return perform(lead, form, "privacy", lambda: ops.set_do_not_contact(lead, current_user, form.how_asked.data),
                   "Marked do not contact. Attempts and callbacks are now blocked.", form_key="dnc")


@bp.post("/<uuid:lead_id>/do-not-contact/lift")
def lift_do_not_contact(lead_id: uuid.UUID):
    """Lift do-not-contact because the patient asked to be contacted again."""
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "privacy", lambda: ops.lift_do_not_contact(lead, current_user),
                   "Do not contact lifted.", form_key="confirm")


@bp.post("/<uuid:lead_id>/access-request")
def request_access(lead_id: uuid.UUID):
    """Record a patient's request for a copy of their data (due within ACCESS_REQUEST_DAYS)."""
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "privacy", lambda: ops.request_access(lead, current_user),
                   lambda due: f"Request recorded. The copy is due by {due:%Y-%m-%d}.", form_key="confirm")


@bp.post("/<uuid:lead_id>/legal-hold")
@role_required(Role.ADMIN)
def place_legal_hold(lead_id: uuid.UUID):
    """Place a legal hold: the lead is never erased, by request or by retention, until released."""
    return _legal_hold(lead_id, True, "Legal hold placed.")


@bp.post("/<uuid:lead_id>/legal-hold/release")
@role_required(Role.ADMIN)
def release_legal_hold(lead_id: uuid.UUID):
    """Release a legal hold."""
    return _legal_hold(lead_id, False, "Legal hold released.")


def _legal_hold(lead_id: uuid.UUID, hold: bool, message: str) -> BaseResponse | str:
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "privacy", lambda: ops.set_legal_hold(lead, current_user, hold), message,
                   form_key="confirm")


@bp.get("/<uuid:lead_id>/export")
@role_required(Role.ADMIN)
@fresh_required
def export_copy(lead_id: uuid.UUID):
    """Download the patient's copy: one self-contained HTML file, never cached, audited."""
    lead = _lead_or_404(lead_id, for_update=True)
    if lead.is_erased:
        flash(_("This lead was erased; there is nothing left to export."), "error")
        return _back(lead.id)
    html, details, reading = export.render(lead)
    if reading.failed:
        ops.record("decrypt_failed", lead.id, current_user, {"fields": sorted(set(reading.failed)),
                                                             "during": "export"}, outcome="failure")
    ops.record_export(lead, current_user, {**details, "via": "web"})
    name = export.filename(lead)
    db.session.commit()
    return Response(html, mimetype="text/html", headers={
        "Cache-Control": "no-store, private", "Content-Disposition": f'attachment; filename="{name}"'})


@bp.post("/<uuid:lead_id>/erase")
@role_required(Role.ADMIN)
@fresh_required
def erase(lead_id: uuid.UUID):
    """Crypto-shred the lead on the patient's request, once its reference is typed again."""
    lead = _lead_or_404(lead_id, for_update=True)
    if lead.is_erased:
        erased_on = lead.erased_at.strftime("%Y-%m-%d")
        flash(_("This lead was already erased on %(day)s; nothing changed.", day=erased_on), "info")
        return _back(lead.id)
    form = EraseForm()
    if not form.validate_on_submit() or not form.matches(lead.reference):
        return render_detail(lead, erase=form)
    lead_id_text = lead.id
    try:
        ops.erase_lead(lead, current_user)
    except ops.PrivacyRefusal as exc:
        db.session.commit()  # keep the audited refusal
        flash(_("Not erased: %(why)s", why=exc), "error")
        return _back(lead_id_text)
    db.session.commit()
    checkpoint_sqlite()
    flash(_("Lead erased: its data key and personal details are destroyed."), "success")
    return _back(lead_id_text)
