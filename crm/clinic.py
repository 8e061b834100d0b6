"""The clinic's clock: its time zone, today's date there, and a person's age on a given day.

Dates patients and staff see and type (dates of birth, "today", callback times) are the
clinic's local ones, never the server's: a server on UTC would otherwise make a patient a
year older, or an adult, a day early in the Pacific evening.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import current_app

from .hours import ClinicHours


def clinic_zone() -> ZoneInfo:
    """The clinic's time zone (``TIMEZONE``, default America/Los_Angeles)."""
    return ZoneInfo(current_app.config["TIMEZONE"])


def clinic_today() -> dt.date:
    """Today's date in the clinic's time zone."""
    return dt.datetime.now(clinic_zone()).date()


def age_on(dob: dt.date, day: dt.date) -> int:
    """Whole years between ``dob`` and ``day``."""
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def clinic_hours() -> ClinicHours:
    """The clinic's opening hours and holidays from configuration, parsed once per application."""
    hours = current_app.extensions.get("crm_clinic_hours")
    if hours is None:
        config = current_app.config
        hours = ClinicHours.from_config(clinic_zone(), config["OPENING_HOURS"], config["CLINIC_HOLIDAYS"])
        current_app.extensions["crm_clinic_hours"] = hours
    return hours
