"""Appointments: booking moves a lead to scheduled; reschedule, cancel, attended, no-show, converted.

Each function checks its rules (raising ``ValueError`` with a message the view can flash,
never PHI), changes rows, flushes and audits; the view commits. Stage moves go through
``leads.move_stage`` (or ``leads.apply_move`` for the two steps back the pipeline graph
has no edge for: a no-show returns to contacting, a cancellation to eligible).
"""

from __future__ import annotations

import datetime as dt

from flask_babel import gettext as _
from sqlalchemy import select

from .. import cadence
from ..clinic import clinic_today, clinic_zone
from ..models import Appointment, AppointmentStatus, Lead, Role, Stage, User, db, utcnow
from .guards import refuse_if_do_not_contact, refuse_if_erased
from .leads import add_event, apply_move, move_stage, record
from .refusals import Refused, Stale

NO_SHOW_REASON = "no_show"
CANCELLED_REASON = "appointment_cancelled"


def booked(lead: Lead) -> Appointment | None:
    """The lead's appointment still to happen, if any."""
    return db.session.scalars(select(Appointment).where(
        Appointment.lead_id == lead.id, Appointment.status == AppointmentStatus.BOOKED)
        .order_by(Appointment.starts_at).limit(1)).first()


def _check_clinician(clinician: User | None) -> User:
    if clinician is None or clinician.role != Role.CLINICIAN or not clinician.is_active_flag:
        raise Refused(_("Choose an active clinician for the appointment."), "clinician")
    return clinician


def _check_time(starts_at: dt.datetime, now: dt.datetime) -> None:
    if starts_at <= now:
        raise Refused(_("Pick an appointment time in the future."), "starts_at")


def book(lead: Lead, actor: User, kind: str, starts_at: dt.datetime, place: str, clinician: User | None,
         notes: str | None, now: dt.datetime | None = None) -> Appointment:
    """Book the appointment of an eligible lead and move it to scheduled."""
    refuse_if_erased(lead)
    now = now or utcnow()
    if lead.stage != Stage.ELIGIBLE:
        raise Stale(_("Only an eligible lead can be booked; a scheduled one is rescheduled instead."))
    _check_time(starts_at, now)
    appointment = Appointment(lead=lead, kind=kind, starts_at=starts_at, place=place,
                              clinician_id=_check_clinician(clinician).id, status=AppointmentStatus.BOOKED,
                              created_by=actor.id, created_at=now, updated_at=now, notes=notes or None)
    db.session.add(appointment)
    db.session.flush()
    move_stage(lead, Stage.SCHEDULED, None, actor, now=now)
    add_event(lead, actor, "appointment", at=now, reason="booked")
    record("appointment_booked", lead.id, actor, {"appointment_id": appointment.id, "kind": kind, "place": place,
                                                   "clinician": appointment.clinician_id})
    return appointment


def _open_appointment(lead: Lead, appointment: Appointment) -> None:
    refuse_if_erased(lead)
    if appointment.lead_id != lead.id:
        raise ValueError(_("That appointment belongs to another lead."))
    if appointment.status != AppointmentStatus.BOOKED:
        raise Stale(_("That appointment is no longer booked; check the page and try again."))


def reschedule(lead: Lead, appointment: Appointment, actor: User, starts_at: dt.datetime, clinician: User | None,
               now: dt.datetime | None = None) -> Appointment:
    """Move a booked appointment to a new time (and clinician)."""
    _open_appointment(lead, appointment)
    now = now or utcnow()
    _check_time(starts_at, now)
    appointment.starts_at, appointment.clinician_id = starts_at, _check_clinician(clinician).id
    appointment.updated_at = now
    add_event(lead, actor, "appointment", at=now, reason="rescheduled")
    record("appointment_rescheduled", lead.id, actor, {"appointment_id": appointment.id,
                                                        "clinician": appointment.clinician_id})
    return appointment


def cancel(lead: Lead, appointment: Appointment, actor: User, now: dt.datetime | None = None) -> None:
    """Cancel a booked appointment; the lead goes back to eligible, ready to book again."""
    _open_appointment(lead, appointment)
    now = now or utcnow()
    _close(lead, appointment, actor, AppointmentStatus.CANCELLED, now)
    if lead.stage == Stage.SCHEDULED and booked(lead) is None:
        apply_move(lead, Stage.ELIGIBLE, CANCELLED_REASON, actor, now)


def mark_attended(lead: Lead, appointment: Appointment, actor: User, now: dt.datetime | None = None) -> None:
    """Record that the patient came; converting then needs the first treatment's date."""
    _open_appointment(lead, appointment)
    _close(lead, appointment, actor, AppointmentStatus.ATTENDED, now or utcnow())


def mark_no_show(lead: Lead, appointment: Appointment, actor: User,
                 now: dt.datetime | None = None) -> dt.datetime | None:
    """Record a missed appointment: the lead returns to contacting (reason no_show); return a suggested callback.

    No callback is suggested for a patient who asked not to be contacted.
    """
    _open_appointment(lead, appointment)
    now = now or utcnow()
    _close(lead, appointment, actor, AppointmentStatus.NO_SHOW, now)
    if lead.stage == Stage.SCHEDULED:
        apply_move(lead, Stage.CONTACTING, NO_SHOW_REASON, actor, now)
    return suggested_callback(lead, now)


def suggested_callback(lead: Lead, now: dt.datetime) -> dt.datetime | None:
    """A callback time after a no-show: the next day, inside the calling window (None under do-not-contact)."""
    try:
        refuse_if_do_not_contact(lead)
    except ValueError:
        return None
    return cadence.fit_window(now + dt.timedelta(days=1), clinic_zone())


def convert(lead: Lead, actor: User, first_treatment_on: dt.date, now: dt.datetime | None = None) -> None:
    """Record the first treatment's date and move the scheduled lead to converted."""
    refuse_if_erased(lead)
    now = now or utcnow()
    if first_treatment_on is None:
        raise ValueError(_("Enter the first treatment's date."))
    if first_treatment_on > clinic_today():
        raise Refused(_("The first treatment's date cannot be in the future."), "first_treatment_on")
    lead.first_treatment_on = first_treatment_on
    move_stage(lead, Stage.CONVERTED, None, actor, now=now)
    record("lead_converted", lead.id, actor)


def record_calendar_export(lead: Lead, appointment: Appointment, actor: User) -> None:
    """Audit one appointment downloaded as a calendar file."""
    refuse_if_erased(lead)
    record("appointment_exported", lead.id, actor, {"appointment_id": appointment.id})


def _close(lead: Lead, appointment: Appointment, actor: User, status: AppointmentStatus, now: dt.datetime) -> None:
    """Settle a booked appointment as attended, missed or cancelled, on the timeline and in the audit."""
    appointment.status, appointment.updated_at = status, now
    add_event(lead, actor, "appointment", at=now, reason=str(status))
    record(f"appointment_{status}", lead.id, actor, {"appointment_id": appointment.id})
