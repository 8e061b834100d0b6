"""Appointment forms: book, reschedule, settle (attended / no-show / cancel) and convert."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, DateTimeLocalField, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..labels import APPOINTMENT_KINDS as KIND_LABELS
from ..labels import APPOINTMENT_PLACES as PLACE_LABELS
from ..models import AppointmentKind, AppointmentPlace
from .leads import options

SETTLE_CHOICES = [("attended", _l("Attended")), ("no_show", _l("No-show")), ("cancelled", _l("Cancel the appointment"))]


def _when(label: str, id_: str) -> DateTimeLocalField:
    return DateTimeLocalField(label, id=id_, format="%Y-%m-%dT%H:%M",
                              validators=[InputRequired(_l("Choose the appointment's date and time."))])


def _clinician(id_: str) -> SelectField:
    return SelectField(_l("With"), id=id_, validators=[DataRequired(_l("Choose the clinician."))])


class BookForm(FlaskForm):
    """Book an eligible lead's appointment (clinic time)."""

    kind = SelectField(_l("Kind"), id="appointment_kind", choices=options(KIND_LABELS.items()),
                       default=AppointmentKind.CONSULTATION)
    starts_at = _when(_l("Date and time (clinic time)"), "book_starts_at")
    place = SelectField(_l("Place"), id="appointment_place", choices=options(PLACE_LABELS.items()),
                        default=AppointmentPlace.CLINIC)
    clinician = _clinician("book_clinician")
    notes = TextAreaField(_l("Notes (optional)"), id="appointment_notes", validators=[Optional(), Length(max=2000)])


class RescheduleForm(FlaskForm):
    """Move a booked appointment to another time or clinician."""

    starts_at = _when(_l("New date and time (clinic time)"), "reschedule_starts_at")
    clinician = _clinician("reschedule_clinician")


class SettleForm(FlaskForm):
    """How a booked appointment ended: attended, no-show or cancelled."""

    outcome = SelectField(_l("Outcome"), id="appointment_outcome", choices=options(SETTLE_CHOICES),
                          validators=[DataRequired(_l("Choose what happened."))])


class ConvertForm(FlaskForm):
    """The first treatment's date, required to mark the lead converted."""

    first_treatment_on = DateField(_l("First treatment date"), validators=[
        InputRequired(_l("Enter the first treatment's date."))])
