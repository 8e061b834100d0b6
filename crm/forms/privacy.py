"""Privacy actions on the lead page: do-not-contact and the typed confirmation of an erasure."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired

from .leads import options

DNC_CHANNEL_LABELS = [
    ("phone", "On the phone"),
    ("stop_reply", "Replied STOP to a text"),
    ("email", "By e-mail"),
    ("letter", "By letter"),
    ("in_person", "In person"),
]


class DoNotContactForm(FlaskForm):
    """How the patient asked to stop being contacted."""

    how_asked = SelectField("How they asked", choices=options([("", "—"), *DNC_CHANNEL_LABELS]),
                          validators=[InputRequired("Choose how the patient asked.")])


class EraseForm(FlaskForm):
    """Erasure needs the lead's reference code typed again, so a slip of the mouse cannot erase."""

    confirm_reference = StringField("Type the reference code to confirm",
                                    validators=[DataRequired("Type the reference code shown at the top.")],
                                    render_kw={"autocomplete": "off", "spellcheck": "false"})
    next = HiddenField()

    def matches(self, reference: str) -> bool:
        """True when the typed code is the lead's (any letter case, spaces ignored); else a field error."""
        typed = "".join((self.confirm_reference.data or "").split()).upper()
        if typed == reference.upper():
            return True
        self.confirm_reference.errors = [*self.confirm_reference.errors,
                                         "That is not this lead's reference code; nothing was erased."]
        return False
