"""A clinician's sign-off of a pre-screen: a decision, a reason when not eligible, and a note."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from ..labels import SCREENING
from ..models import EXIT_REASONS, Stage
from .leads import code_label, options

DECISION_LABELS = [(code, SCREENING[code]) for code in ("eligible", "not_eligible", "needs_more_information")]


class SignOffForm(FlaskForm):
    """Sign off a pre-screen needing review."""

    decision = RadioField(_l("Decision"), choices=options(DECISION_LABELS),
                          validators=[DataRequired(_l("Choose a decision."))])
    reason = SelectField(_l("Reason (not eligible)"), id="sign_off_reason", default="", choices=options(
        [("", "—")] + [(code, code_label(code)) for code in EXIT_REASONS[Stage.INELIGIBLE]]))
    note = TextAreaField(_l("Note for the coordinator"), id="sign_off_note", validators=[
        DataRequired(_l("Write a note for the coordinator.")), Length(max=4000)])

    def validate_reason(self, field: SelectField) -> None:
        """A not-eligible decision needs its reason."""
        if self.decision.data == "not_eligible" and not field.data:
            raise ValidationError(_("Choose why the patient is not eligible."))
