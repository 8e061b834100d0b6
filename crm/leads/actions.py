"""Changes to a lead: each view loads (row-locked), validates, runs one operation, commits, redirects."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from .. import cadence, calling_hours, eligibility
from ..access import require_role
from ..clinic import clinic_zone
from ..forms import has_answers, show_refusal
from ..forms.clinician import SignOffForm
from ..forms.leads import ConfirmForm, LanguageForm, NoteForm, ScreeningForm
from ..i18n import translate
from ..labels import label
from ..models import Lead, Role, Screening, User, db, utcnow
from ..operations import insurance as ops_insurance
from ..operations import leads as ops
from ..operations import screening as ops_screening
from ..operations.refusals import Stale
from . import bp, get_lead_or_404
from .detail import assign_form, attempt_form, callback_form, remember_reveal, render_detail, stage_form, vob_form


def perform(lead: Lead, form: FlaskForm, name: str, action: Callable[[], Any],
            message: str | Callable[[Any], str], form_key: str | None = None,
            validate: Callable[[], bool] | None = None) -> Any:
    """Validate ``form``, run one operation, commit, flash and redirect back to section ``name``.

    A form error, or a rule the operation refuses, re-renders the page with the failing form,
    every answer kept, in place of the page's form ``form_key`` (default ``name``); nothing is
    stored. A refusal of a button-only form (nothing typed to keep), or one saying the page was
    out of date, is flashed over a fresh page. ``validate`` replaces the form's full check.
    """
    if not (validate or form.validate_on_submit)():
        return render_detail(lead, **{form_key or name: form})
    lead_id = lead.id
    try:
        result = action()
    except ValueError as exc:
        db.session.rollback()
        if has_answers(form) and not isinstance(exc, Stale):
            show_refusal(form, exc)
            return render_detail(lead, **{form_key or name: form})
        flash(str(exc), "error")
        return redirect(url_for("leads.detail", lead_id=lead_id, _anchor=name))
    db.session.commit()
    flash(message(result) if callable(message) else message, "success")
    return redirect(url_for("leads.detail", lead_id=lead_id, _anchor=name))


@bp.post("/<uuid:lead_id>/claim")
def claim(lead_id: uuid.UUID):
    """Take an unassigned lead."""
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "assign", lambda: ops.claim(lead, current_user), _("Lead claimed."),
                   form_key="confirm")


@bp.post("/<uuid:lead_id>/assign")
def assign(lead_id: uuid.UUID):
    """Give the lead to a coordinator."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = assign_form(request.form)
    return perform(lead, form, "assign",
                   lambda: ops.assign(lead, db.session.get(User, form.assignee.data), current_user),
                   _("Lead assigned."))


@bp.post("/<uuid:lead_id>/language")
def set_language(lead_id: uuid.UUID):
    """Record the language the patient prefers to be spoken to in."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = LanguageForm()
    return perform(lead, form, "contact", lambda: ops.set_preferred_language(lead, form.language.data, current_user),
                   _("Preferred language saved."), form_key="language")


def _attempt_message(result: ops.AttemptResult) -> str:
    parts = [_("Attempt logged.")]
    late = calling_hours.warning(utcnow(), calling_hours.patient_zone(clinic_zone()))
    if late:
        parts.append(late)
    if result.moved_to:
        parts.append(_("Stage is now %(stage)s.", stage=label(result.moved_to, "stages").lower()))
    if result.exhausted and not result.moved_to == "unreachable":
        parts.append(translate(cadence.RULES["exhausted_text"]))
    return " ".join(parts)


@bp.post("/<uuid:lead_id>/attempts")
def log_attempt(lead_id: uuid.UUID):
    """Log a call, text or e-mail and how it went."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = attempt_form(lead, request.form)
    if (form.validate_on_submit() and not form.confirm_repeat.data and lead.is_open and not lead.is_do_not_contact
            and ops.recent_attempt(lead, utcnow())):
        form.confirm_repeat.errors = [_("An attempt was logged on this lead less than two minutes ago: "
                                        "tick to confirm this is another one.")]
        return render_detail(lead, attempt=form)
    return perform(lead, form, "attempt", lambda: ops.log_attempt(
        lead, current_user, form.channel.data, form.outcome.data, form.note.data), _attempt_message)


@bp.post("/<uuid:lead_id>/callbacks")
def schedule_callback(lead_id: uuid.UUID):
    """Schedule the next call, entered in clinic time."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = callback_form(request.form)
    return perform(lead, form, "callback", lambda: ops.schedule_callback(
        lead, current_user, cadence.to_utc(form.due_at.data, clinic_zone()), form.caller.data or None),
        _("Callback scheduled."))


@bp.post("/<uuid:lead_id>/acknowledge")
def acknowledge(lead_id: uuid.UUID):
    """Acknowledge an urgent lead: you are now handling it."""
    lead = get_lead_or_404(lead_id, for_update=True)
    return perform(lead, ConfirmForm(), "urgent", lambda: ops.acknowledge_urgent(lead, current_user),
                   _("Urgent lead acknowledged."), form_key="confirm")


@bp.post("/<uuid:lead_id>/notes")
def add_note(lead_id: uuid.UUID):
    """Add an encrypted note."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = NoteForm()
    return perform(lead, form, "note", lambda: ops.add_note(lead, current_user, form.body.data), _("Note added."))


@bp.post("/<uuid:lead_id>/stage")
def move_stage(lead_id: uuid.UUID):
    """Move the lead along the pipeline; the server enforces the graph and the reasons."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = stage_form(lead, request.form)
    return perform(lead, form, "stage", lambda: ops.move_stage(
        lead, form.target.data, form.reason.data or None, current_user, expected=form.expected.data),
        lambda _result: _("Moved to %(stage)s.", stage=label(form.target.data, "stages").lower()))


@bp.post("/<uuid:lead_id>/reveal")
def reveal(lead_id: uuid.UUID):
    """Reveal the member ID, group number and card images for a few minutes (audited)."""
    lead = get_lead_or_404(lead_id)
    return perform(lead, ConfirmForm(), "insurance",
                   lambda: (ops.reveal_insurance(lead, current_user), remember_reveal(lead.id)),
                   _("Member ID and cards revealed for a few minutes."), form_key="confirm")


@bp.post("/<uuid:lead_id>/insurance")
def record_vob(lead_id: uuid.UUID):
    """Record the verification of benefits and prior-authorisation status."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = vob_form(lead, request.form)
    return perform(lead, form, "insurance", lambda: ops_insurance.record_vob(lead, current_user, form.vob_data()),
                   _("Benefits check saved."), form_key="vob")


def _screening_message(screening: Screening) -> str:
    risk = screening.result["cssrs_risk"]
    if eligibility.is_escalation(risk):
        return _("High suicide risk: follow the escalation steps now. The lead is marked urgent.")
    return _("Screening recorded: %(outcome)s.", outcome=label(screening.outcome, "screening").lower())


@bp.post("/<uuid:lead_id>/screenings")
def record_screening(lead_id: uuid.UUID):
    """Record a pre-screen: checklist, PHQ-9 and C-SSRS."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = ScreeningForm()
    return perform(lead, form, "screening", lambda: ops_screening.record_screening(
        lead, current_user, form.answers(), form.phq9(), form.cssrs(), form.recent()), _screening_message)


@bp.post("/<uuid:lead_id>/screenings/draft")
def save_screening_draft(lead_id: uuid.UUID):
    """Keep a partly answered pre-screen to finish later (audited); it is never scored and counts for nothing."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = ScreeningForm()
    return perform(lead, form, "screening", lambda: ops_screening.save_draft(
        lead, current_user, form.draft_answers(), form.cssrs(), form.recent()),
        _("Draft saved. It counts for nothing until the screening is recorded."), validate=form.validate_draft)


@bp.post("/<uuid:lead_id>/screenings/<uuid:screening_id>/sign-off")
def sign_off(lead_id: uuid.UUID, screening_id: uuid.UUID):
    """Sign off a pre-screen as the reviewing clinician: a decision and a note, audited."""
    lead = get_lead_or_404(lead_id, for_update=True)
    screening = db.session.get(Screening, str(screening_id))
    if screening is None or screening.lead_id != lead.id:
        abort(404)
    require_role(Role.CLINICIAN, reason="clinician_only")
    form = SignOffForm()
    return perform(lead, form, "screening", lambda: ops_screening.sign_off(
        screening, current_user, form.decision.data, form.note.data, form.reason.data or None),
        _("Screening signed off."), form_key="sign_off")
