"""Correcting a lead: the edit page, proposals from unverified enquiries, the current insurance, previous values."""

from __future__ import annotations

import uuid

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..forms.intake import CorrectLeadForm, MergeForm
from ..forms.leads import ConfirmForm
from ..labels import field_name
from ..models import db
from ..operations import leads as ops
from ..operations import merge as ops_merge
from ..operations import records as ops_records
from . import bp, get_lead_or_404, present
from .actions import perform
from .detail import render_detail
from .queries import as_reference, find_by_reference


@bp.route("/<uuid:lead_id>/edit", methods=["GET", "POST"])
def edit(lead_id: uuid.UUID):
    """Correct the lead's details; each change is recorded with the value it replaced (audited by name only)."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = CorrectLeadForm()
    if form.validate_on_submit():
        try:
            changed = ops_records.correct_lead(lead, current_user, form.lead_values())
        except ValueError as exc:
            form.form_errors.append(str(exc))
        else:
            db.session.commit()
            fields = ", ".join(field_name(name) for name in changed)
            flash(_("Saved: %(fields)s changed.", fields=fields), "success")
            return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="contact"))
    reader = present.Reader()
    if not form.is_submitted():
        form.load(present.contact_block(lead, reader), present.insurance_block(lead, reader, revealed=True),
                  lead.preferred_language)
        ops.record("lead_edit_opened", lead.id, current_user)  # the form shows every identifier in full
    ops.record_unreadable(lead.id, current_user, reader.failed.get(lead.id, []))
    db.session.commit()
    return render_template("leads/edit.html", lead=lead, form=form)


@bp.post("/<uuid:lead_id>/proposals/<uuid:proposal_id>/accept")
def accept_proposal(lead_id: uuid.UUID, proposal_id: uuid.UUID):
    """Make the details an unverified enquiry brought the lead's own, after speaking to the patient."""
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "contact", lambda: _settle(ops_records.accept_proposal, lead, proposal_id),
                   "The new details are now the lead's.", form_key="confirm")


@bp.post("/<uuid:lead_id>/proposals/<uuid:proposal_id>/dismiss")
def dismiss_proposal(lead_id: uuid.UUID, proposal_id: uuid.UUID):
    """Keep the lead's details; the enquiry stays on the timeline."""
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "contact", lambda: _settle(ops_records.dismiss_proposal, lead, proposal_id),
                   "The new details were dismissed.", form_key="confirm")


def _settle(action, lead, proposal_id: uuid.UUID):
    try:
        return action(lead, current_user, str(proposal_id))
    except LookupError:
        abort(404)


@bp.post("/<uuid:lead_id>/insurances/<uuid:insurance_id>/current")
def choose_insurance(lead_id: uuid.UUID, insurance_id: uuid.UUID):
    """Make one of the insurances given in the lead's enquiries the current one."""
    lead = get_lead_or_404(lead_id, for_update=True)

    def choose():
        try:
            ops_records.choose_insurance(lead, current_user, str(insurance_id))
        except LookupError:
            abort(404)
    return perform(lead, ConfirmForm(), "insurance", choose, "Current insurance changed.", form_key="confirm")


@bp.post("/<uuid:lead_id>/history")
def reveal_history(lead_id: uuid.UUID):
    """Show the values the lead's corrections replaced, on this page only; the reveal is audited."""
    lead = get_lead_or_404(lead_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        shown = ops_records.reveal_previous_values(lead, current_user)
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("leads.detail", lead_id=lead.id))
    return render_detail(lead, history=shown)


@bp.post("/<uuid:lead_id>/merge")
def merge(lead_id: uuid.UUID):
    """Merge this lead and another record of the same person; the other's address then redirects."""
    lead = get_lead_or_404(lead_id)  # not locked here: the operation locks both leads in id order
    form = MergeForm()
    if not form.validate_on_submit():
        return render_detail(lead, merge=form)
    others = find_by_reference(as_reference(form.other.data) or "")
    if len(others) != 1 or others[0].id == lead.id:
        form.other.errors.append("No other lead has that reference code." if not others or others[0].id != lead.id
                                 else "A lead cannot be merged with itself.")
        return render_detail(lead, merge=form)
    survivor, absorbed = (lead, others[0]) if form.survivor.data == "this" else (others[0], lead)
    try:
        ops_merge.merge_leads(survivor.id, absorbed.id, current_user)
    except (ValueError, LookupError) as exc:
        db.session.rollback()
        flash(str(exc) if isinstance(exc, ValueError) else _("That lead no longer exists."), "error")
        return redirect(url_for("leads.detail", lead_id=lead.id))
    db.session.commit()
    flash(_("The two records are merged into this lead."), "success")
    return redirect(url_for("leads.detail", lead_id=survivor.id))
