"""Privacy actions on the lead page: do-not-contact and the typed confirmation of an erasure."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired

from ..labels import CONTACT_WAYS
from .leads import options

DNC_CHANNEL_LABELS = [(code, CONTACT_WAYS[code]) for code in ("phone", "stop_reply", "email", "letter", "in_person")]


class DoNotContactForm(FlaskForm):
    """How the patient asked to stop being contacted."""

    how_asked = SelectField(_l("How they asked"), choices=options([("", "—"), *DNC_CHANNEL_LABELS]),
                          validators=[InputRequired(_l("Choose how the patient asked."))])


class EraseForm(FlaskForm):
    """Erasure needs the lead's reference code typed again, so a slip of the mouse cannot erase."""

    confirm_reference = StringField(_l("Type the reference code to confirm"),
                                    validators=[DataRequired(_l("Type the reference code shown at the top."))],
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
