"""Appointment forms: book, reschedule, settle (attended / no-show / cancel) and convert."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, DateTimeLocalField, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..labels import APPOINTMENT_KINDS as KIND_LABELS
from ..labels import APPOINTMENT_PLACES as PLACE_LABELS
from ..models import AppointmentKind, AppointmentPlace
from .leads import options

SETTLE_CHOICES = [("attended", "Attended"), ("no_show", "No-show"), ("cancelled", "Cancel the appointment")]


def _when(label: str, id_: str) -> DateTimeLocalField:
    return DateTimeLocalField(label, id=id_, format="%Y-%m-%dT%H:%M",
                              validators=[InputRequired("Choose the appointment's date and time.")])


def _clinician(id_: str) -> SelectField:
    return SelectField("With", id=id_, validators=[DataRequired("Choose the clinician.")])


class BookForm(FlaskForm):
    """Book an eligible lead's appointment (clinic time)."""

    kind = SelectField("Kind", id="appointment_kind", choices=options(KIND_LABELS.items()),
                       default=AppointmentKind.CONSULTATION)
    starts_at = _when("Date and time (clinic time)", "book_starts_at")
    place = SelectField("Place", id="appointment_place", choices=options(PLACE_LABELS.items()),
                        default=AppointmentPlace.CLINIC)
    clinician = _clinician("book_clinician")
    notes = TextAreaField("Notes (optional)", id="appointment_notes", validators=[Optional(), Length(max=2000)])


class RescheduleForm(FlaskForm):
    """Move a booked appointment to another time or clinician."""

    starts_at = _when("New date and time (clinic time)", "reschedule_starts_at")
    clinician = _clinician("reschedule_clinician")


class SettleForm(FlaskForm):
    """How a booked appointment ended: attended, no-show or cancelled."""

    outcome = SelectField("Outcome", id="appointment_outcome", choices=options(SETTLE_CHOICES),
                          validators=[DataRequired("Choose what happened.")])


class ConvertForm(FlaskForm):
    """The first treatment's date, required to mark the lead converted."""

    first_treatment_on = DateField("First treatment date", validators=[
        InputRequired("Enter the first treatment's date.")])
