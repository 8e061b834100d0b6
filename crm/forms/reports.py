"""Report filters, read from the query string: codes and dates only, never PHI, so a view can be bookmarked."""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField
from wtforms.validators import Optional

from .. import payers
from ..models import CoverageType, LeadSource
from .leads import _choices, options

PERIODS = [("this_week", _l("This week")), ("last_week", _l("Last week")), ("last_30", _l("Last 30 days")),
           ("last_90", _l("Last 90 days")), ("this_quarter", _l("This quarter")), ("custom", _l("Custom dates"))]
DEFAULT_PERIOD = "last_30"
MAX_CUSTOM_DAYS = 3 * 366


class ReportFilterForm(FlaskForm):
    """Which leads a report counts: the date they came in, where from, their payer, coordinator and urgency."""

    class Meta:
        csrf = False

    period = SelectField(_l("Period"), choices=options(PERIODS), default=DEFAULT_PERIOD)
    date_from = DateField(_l("From"), validators=[Optional()])
    date_to = DateField(_l("To"), validators=[Optional()])
    source = SelectField(_l("Source"), choices=_choices(list(LeadSource), _l("Any source")), default="")
    coverage = SelectField(_l("Coverage type"), choices=_choices(list(CoverageType), _l("Any coverage")), default="")
    payer = SelectField(_l("Carrier"), default="", choices=options([("", _l("Any carrier")), *payers.PAYERS]))
    coordinator = SelectField(_l("Coordinator"), choices=options([("", _l("Everyone")), ("none", _l("Unassigned"))]),
                              default="")
    urgency = SelectField(_l("Urgency"), default="", choices=options(
        [("", _l("Any")), ("urgent", _l("Urgent only")), ("not_urgent", _l("Not urgent"))]))

    def validate(self, extra_validators=None) -> bool:  # noqa: ANN001  (WTForms' signature)
        """Field rules, then: custom dates need both ends, in order, at most three years apart."""
        valid = super().validate(extra_validators)
        if self.period.data != "custom":
            return valid
        start, end = self.date_from.data, self.date_to.data
        if start is None and not self.date_from.errors:
            self.date_from.errors = [*self.date_from.errors, "Enter the first day of the period."]
        if end is None and not self.date_to.errors:
            self.date_to.errors = [*self.date_to.errors, "Enter the last day of the period."]
        if start and end and end < start:
            self.date_to.errors = [*self.date_to.errors, "The last day comes before the first."]
        elif start and end and (end - start).days > MAX_CUSTOM_DAYS:
            self.date_to.errors = [*self.date_to.errors, "Choose at most three years."]
        return valid and not self.date_from.errors and not self.date_to.errors


def period_bounds(period: str, today: dt.date, start: dt.date | None = None,
                  end: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive, clinic dates) of a preset period, or of the custom dates."""
    monday = today - dt.timedelta(days=today.weekday())
    if period == "this_week":
        return monday, today
    if period == "last_week":
        return monday - dt.timedelta(days=7), monday - dt.timedelta(days=1)
    if period == "last_90":
        return today - dt.timedelta(days=89), today
    if period == "this_quarter":
        return dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), today
    if period == "custom" and start and end:
        return start, end
    return today - dt.timedelta(days=29), today
