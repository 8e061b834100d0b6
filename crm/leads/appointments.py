"""Appointment views: book, reschedule, settle, convert, and the calendar file for one appointment."""

from __future__ import annotations

import uuid

from flask import Response, abort, request
from flask_babel import gettext as _
from flask_login import current_user

from .. import cadence, ics
from ..clinic import clinic_zone
from ..forms.appointments import KIND_LABELS, PLACE_LABELS, ConvertForm, SettleForm
from ..models import Appointment, Lead, User, db, utcnow
from ..operations import appointments as ops
from . import bp, get_lead_or_404
from .actions import perform
from .appointment_panel import book_form, reschedule_form

SECTION = "appointments"


def _appointment_or_404(lead: Lead, appointment_id: uuid.UUID) -> Appointment:
    appointment = db.session.get(Appointment, str(appointment_id), with_for_update=True)
    if appointment is None or appointment.lead_id != lead.id:
        abort(404)
    return appointment


def _in_clinic_time(local) -> object:
    return cadence.to_utc(local, clinic_zone())


@bp.post("/<uuid:lead_id>/appointments")
def book(lead_id: uuid.UUID):
    """Book the appointment, entered in clinic time; the lead moves to scheduled."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = book_form(request.form)
    return perform(lead, form, SECTION, lambda: ops.book(
        lead, current_user, form.kind.data, _in_clinic_time(form.starts_at.data), form.place.data,
        db.session.get(User, form.clinician.data), form.notes.data), _("Appointment booked; the lead is scheduled."),
        form_key="book")


@bp.post("/<uuid:lead_id>/appointments/<uuid:appointment_id>/reschedule")
def reschedule(lead_id: uuid.UUID, appointment_id: uuid.UUID):
    """Move a booked appointment to a new time or clinician."""
    lead = get_lead_or_404(lead_id, for_update=True)
    appointment = _appointment_or_404(lead, appointment_id)
    form = reschedule_form(request.form)
    return perform(lead, form, SECTION, lambda: ops.reschedule(
        lead, appointment, current_user, _in_clinic_time(form.starts_at.data),
        db.session.get(User, form.clinician.data)), _("Appointment rescheduled."), form_key="reschedule")


def _settle_message(outcome: str, suggested) -> str:
    if outcome == "no_show":
        text = _("Marked no-show; the lead is back in contacting.")
        if suggested is not None:
            when = cadence.to_local(suggested, clinic_zone()).strftime("%b %-d, %-I:%M %p")
            text += " " + _("Suggested callback: %(when)s (schedule it under Next callback).", when=when)
        return text
    if outcome == "cancelled":
        return _("Appointment cancelled; the lead is eligible again.")
    return _("Marked attended.")


@bp.post("/<uuid:lead_id>/appointments/<uuid:appointment_id>/outcome")
def settle(lead_id: uuid.UUID, appointment_id: uuid.UUID):
    """Record how a booked appointment ended: attended, no-show or cancelled."""
    lead = get_lead_or_404(lead_id, for_update=True)
    appointment = _appointment_or_404(lead, appointment_id)
    form = SettleForm()
    actions = {"attended": ops.mark_attended, "no_show": ops.mark_no_show, "cancelled": ops.cancel}
    return perform(lead, form, SECTION, lambda: actions[form.outcome.data](lead, appointment, current_user),
                   lambda result: _settle_message(form.outcome.data, result), form_key="settle")


@bp.post("/<uuid:lead_id>/convert")
def convert(lead_id: uuid.UUID):
    """Mark the lead converted with its first treatment's date."""
    lead = get_lead_or_404(lead_id, for_update=True)
    form = ConvertForm()
    return perform(lead, form, SECTION, lambda: ops.convert(lead, current_user, form.first_treatment_on.data),
                   _("Converted: the first treatment is recorded."), form_key="convert")


@bp.get("/<uuid:lead_id>/appointments/<uuid:appointment_id>.ics")
def calendar_file(lead_id: uuid.UUID, appointment_id: uuid.UUID):
    """Download one appointment as an .ics event naming only the reference code and kind (audited)."""
    lead = get_lead_or_404(lead_id)
    appointment = _appointment_or_404(lead, appointment_id)
    ops.record_calendar_export(lead, appointment, current_user)
    db.session.commit()
    body = ics.event(appointment.id, lead.reference, KIND_LABELS.get(appointment.kind, "Appointment"),
                     PLACE_LABELS.get(appointment.place, ""), appointment.starts_at, utcnow(), request.host)
    return Response(body, mimetype="text/calendar", headers={
        "Cache-Control": "no-store, private",
        "Content-Disposition": f'attachment; filename="appointment-{lead.reference}.ics"'})
