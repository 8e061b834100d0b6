"""TCPA calling hours: calls and texts to a patient only between 8 am and 9 pm in their time zone.

The patient's zone is taken as the clinic's (``TIMEZONE``): the clinic serves patients within
driving distance, and no ZIP-to-time-zone table is kept, so a patient in another zone is not
detected. The check warns; it never blocks a call the patient asked for.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask_babel import gettext as _

START, END = dt.time(8, 0), dt.time(21, 0)


def patient_zone(clinic: ZoneInfo) -> ZoneInfo:
    """The zone calling hours are judged in: the clinic's (see the module note)."""
    return clinic


def outside_calling_hours(now: dt.datetime, zone: ZoneInfo) -> bool:
    """True when naive-UTC ``now`` falls outside 8 am–9 pm in ``zone``."""
    local = now.replace(tzinfo=dt.UTC).astimezone(zone).time()
    return not START <= local < END


def warning(now: dt.datetime, zone: ZoneInfo) -> str | None:
    """The warning to show for a call or text at ``now``, or None inside calling hours."""
    if not outside_calling_hours(now, zone):
        return None
    local = now.replace(tzinfo=dt.UTC).astimezone(zone).strftime("%-I:%M %p")
    return _("It is %(time)s for the patient (the clinic's time zone): outside TCPA calling hours, 8 AM–9 PM. "
             "Call or text only if the patient asked for this time.", time=local)
