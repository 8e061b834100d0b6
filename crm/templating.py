"""Jinja filters shared by the staff and public templates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import Flask, current_app


def localtime(value: dt.datetime | None, fmt: str = "%b %-d, %-I:%M %p") -> str:
    """Show a stored naive-UTC time in the clinic's time zone."""
    if value is None:
        return ""
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    return value.replace(tzinfo=dt.UTC).astimezone(zone).strftime(fmt)


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


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(localtime)
    app.add_template_filter(duration)
