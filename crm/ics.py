"""One appointment as an iCalendar (RFC 5545) event naming only the reference code and kind, never PHI."""

from __future__ import annotations

import datetime as dt

DURATION = dt.timedelta(hours=1)


def _escape(text: str) -> str:
    """Escape a TEXT value (backslash, semicolon, comma, newline)."""
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _stamp(at: dt.datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%SZ")


def event(uid: str, reference: str, kind_label: str, place_label: str, starts_at: dt.datetime,
          stamp: dt.datetime, host: str) -> bytes:
    """A VCALENDAR with one VEVENT; times are naive UTC, written with ``Z``."""
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Intake CRM//Appointments//EN", "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH", "BEGIN:VEVENT",
        f"UID:{uid}@{host}",
        f"DTSTAMP:{_stamp(stamp)}",
        f"DTSTART:{_stamp(starts_at)}",
        f"DTEND:{_stamp(starts_at + DURATION)}",
        f"SUMMARY:{_escape(f'{reference} – {kind_label}')}",
        f"LOCATION:{_escape(place_label)}",
        "END:VEVENT", "END:VCALENDAR",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
