"""The lead page's appointments panel: its forms and what it shows (notes decrypted, audited with the page)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm

from ..forms.appointments import KIND_LABELS, PLACE_LABELS, BookForm, ConvertForm, RescheduleForm, SettleForm
from ..forms.leads import options
from ..models import Appointment, Lead, Role, User, db
from . import present, queries


def clinician_choices() -> list:
    """Active clinicians as select choices."""
    users = queries.staff_directory().values()
    return options([("", "—")] + [(u.id, present.staff_name(u)) for u in users
                                  if u.role == Role.CLINICIAN and u.is_active_flag])


def book_form(formdata: Any = None) -> BookForm:
    """The booking form listing active clinicians."""
    form = BookForm(formdata=formdata)
    form.clinician.choices = clinician_choices()
    return form


def reschedule_form(formdata: Any = None, **data: Any) -> RescheduleForm:
    """The reschedule form listing active clinicians."""
    form = RescheduleForm(formdata=formdata, **data)
    form.clinician.choices = clinician_choices()
    return form


def appointment_forms(lead: Lead) -> dict[str, FlaskForm]:
    """Fresh appointment forms for the lead page."""
    return {"book": book_form(), "reschedule": reschedule_form(), "settle": SettleForm(formdata=None),
            "convert": ConvertForm(formdata=None)}


def appointments_view(lead: Lead, reader: present.Reader, users: dict[str, User]) -> list[dict[str, Any]]:
    """The lead's appointments, newest first, with words for the codes."""
    rows = db.session.scalars(db.select(Appointment).where(Appointment.lead_id == lead.id)
                              .order_by(Appointment.starts_at.desc()))
    return [{"record": row, "kind": KIND_LABELS.get(row.kind, row.kind),
             "place": PLACE_LABELS.get(row.place, row.place),
             "clinician": present.staff_name(users.get(row.clinician_id)), "status": row.status,
             "notes": reader.get(row, "notes", lead.id)} for row in rows]
