"""The audit viewer's filter form (read from the query string, or a CSV export's POST)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, SelectField, StringField
from wtforms.validators import Length, NumberRange, Optional, Regexp, ValidationError

from . import IntegerField

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
LEAD_KEY = rf"^({UUID}|[A-Za-z0-9]{{4}}-[A-Za-z0-9]{{4}})$"


class AuditFilterForm(FlaskForm):
    """Who, which lead, what and when; the view supplies the user and action choices."""

    class Meta:
        csrf = False  # a GET filter; the export POST checks its token through CSRFProtect

    user = SelectField(_l("Staff member"), choices=[], validate_choice=True, default="")
    lead = StringField(
        _l("Lead (reference or id)"),
        validators=[
            Optional(),
            Length(max=36),
            Regexp(LEAD_KEY, message=_l("Enter a lead reference like ABCD-EFGH or a lead id.")),
        ],
        filters=[lambda value: value.strip() if value else value],
    )
    action = SelectField(_l("Action"), choices=[], validate_choice=True, default="")
    date_from = DateField(_l("From (clinic date)"), validators=[Optional()])
    date_to = DateField(_l("To (clinic date)"), validators=[Optional()])
    before = IntegerField(widget=HiddenField.widget, validators=[Optional(), NumberRange(min=1)])
    after = IntegerField(widget=HiddenField.widget, validators=[Optional(), NumberRange(min=0)])

    def validate_date_to(self, field: DateField) -> None:
        """The range must not end before it starts."""
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError("The end date is before the start date.")
