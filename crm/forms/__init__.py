"""Flask-WTF forms, one module per blueprint: field shape and messages only.

Every POST is CSRF-protected by :data:`csrf`, including those made without a form class.
"""

from typing import Any

import wtforms
from flask import Flask
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

csrf = CSRFProtect()
#: Shown when a form's CSRF token expired (every form's error summary, and the public form's own page).
FORM_EXPIRED = _l("The form expired. Please send it again.")


def init_app(app: Flask) -> None:
    """Protect every POST against CSRF; give templates the expired-form message and a form's problems."""
    csrf.init_app(app)
    app.add_template_global(FORM_EXPIRED, "FORM_EXPIRED")
    app.add_template_global(problems, "form_problems")

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


def has_answers(form: FlaskForm) -> bool:
    """True when the form carries something typed or chosen (not only its CSRF token, as a button does)."""
    return any(field.name != "csrf_token" for field in form)


def show_refusal(form: FlaskForm, refusal: Exception) -> None:
    """Put an operation's refusal on the form: at each answer it names, otherwise at the top of the form."""
    fields = [name for name in getattr(refusal, "fields", ()) if name in form]
    for name in fields:
        form[name].errors = [*form[name].errors, str(refusal)]
    if not fields:
        form.form_errors.append(str(refusal))


def problems(form: FlaskForm) -> list[tuple[str, str | None]]:
    """Each distinct problem of a submitted form once, with the id of the first field it is shown at.

    Fields that share a message (every unanswered checklist item) make one entry, linked to the
    first of them; each field still shows the message itself. ``None``: a problem of the whole form.
    """
    found: dict[str, str | None] = {str(message): None for message in form.form_errors}
    for field in form:
        if not field.errors:
            continue
        if field.name == "csrf_token":
            found.setdefault(str(FORM_EXPIRED), None)
        else:
            found.setdefault(str(field.errors[0]), None if field.type == "HiddenField" else field.id)
    return list(found.items())
