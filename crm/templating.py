"""Jinja filters shared by the staff and public templates."""

from __future__ import annotations

import datetime as dt
import re

from flask import Flask, current_app

from . import crypto
from .clinic import clinic_zone


def localtime(value: dt.datetime | None, fmt: str = "%b %-d, %-I:%M %p") -> str:
    """Show a stored naive-UTC time in the clinic's time zone."""
    if value is None:
        return ""
    return value.replace(tzinfo=dt.UTC).astimezone(clinic_zone()).strftime(fmt)


def duration(delta: dt.timedelta | None) -> str:
    """Render a time span compactly: ``4m``, ``3h 12m``, ``2d 5h``."""
    if delta is None:
        return "—"
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def tel(value: str | None) -> str:
    """Turn a displayed phone number into a ``tel:`` target of digits and a leading ``+`` only.

    A number the phone library understands becomes E.164, as on the staff pages, so an extension or a
    vanity spelling still dials the right line; anything else (a short code such as 988) keeps its digits.
    """
    text = str(value or "").strip()
    return crypto.normalize_phone(text, current_app.config["PHONE_REGION"]) or (
        ("+" if text.startswith("+") else "") + re.sub(r"[^0-9]", "", text)
    )


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(localtime)
    app.add_template_filter(duration)
    app.add_template_filter(tel)
