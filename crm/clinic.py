"""The clinic's clock: its time zone, today's date there, and a person's age on a given day.

Dates patients and staff see and type (dates of birth, "today", callback times) are the
clinic's local ones, never the server's: a server on UTC would otherwise make a patient a
year older, or an adult, a day early in the Pacific evening.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import current_app


def clinic_zone() -> ZoneInfo:
    """The clinic's time zone (``TIMEZONE``, default America/Los_Angeles)."""
    return ZoneInfo(current_app.config["TIMEZONE"])


def clinic_today() -> dt.date:
    """Today's date in the clinic's time zone."""
    return dt.datetime.now(clinic_zone()).date()


def age_on(dob: dt.date, day: dt.date) -> int:
    """Whole years between ``dob`` and ``day``."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))
