"""Flask-WTF forms, one module per blueprint: field shape and messages only.

Every POST is CSRF-protected by :data:`csrf`, including those made without a form class.
"""

from typing import Any

import wtforms
from flask import Flask
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFProtect
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

csrf = CSRFProtect()
#: Shown when a form's CSRF token expired (every form's error summary, and the public form's own page).
FORM_EXPIRED = _l("The form expired. Please send it again.")


def init_app(app: Flask) -> None:
    """Protect every POST against CSRF and give templates the expired-form message."""
    csrf.init_app(app)
    app.add_template_global(FORM_EXPIRED, "FORM_EXPIRED")

#: Digits an integer answer may have: every such number fits a 64-bit column and converts to a float.
MAX_INTEGER_DIGITS = 18


class IntegerField(wtforms.IntegerField):
    """An integer field that refuses numbers too long to use: WTForms' NumberRange turns the value into a
    float (OverflowError past ~1e308) and PostgreSQL refuses one past a BIGINT, both server errors."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and len(str(valuelist[0]).strip().lstrip("+-")) > MAX_INTEGER_DIGITS:
            self.data = None
            raise ValueError(self.gettext("Enter a smaller number."))
        super().process_formdata(valuelist)


class MultiCheckboxField(SelectMultipleField):
    """Several choices shown as a list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()
