"""Flask-WTF forms, one module per blueprint: field shape and messages only.

Every POST is CSRF-protected by :data:`csrf`, including those made without a form class.
"""

from flask_wtf.csrf import CSRFProtect
from wtforms import SelectMultipleField
from wtforms.widgets import CheckboxInput, ListWidget

csrf = CSRFProtect()


class MultiCheckboxField(SelectMultipleField):
    """Several choices shown as a list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()
