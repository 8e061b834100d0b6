"""Alert forms: which alerts a person receives, and who is on call."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm

from . import MultiCheckboxField


class ButtonForm(FlaskForm):
    """A button-only form: mark read, resend (CSRF token only)."""


class PreferencesForm(FlaskForm):
    """The alerts a staff member chooses to receive (choices set by the view)."""

    kinds = MultiCheckboxField(_l("Send me these alerts"), choices=[], validate_choice=True)


class OnCallForm(FlaskForm):
    """The staff members who receive urgent-enquiry alerts (choices set by the view)."""

    members = MultiCheckboxField(_l("On call for urgent enquiries"), choices=[], validate_choice=True)
